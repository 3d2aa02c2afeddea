# Ported from seeds/002_996207f951c90cf5.txt, 案例1: a producer fetches four
# pages and puts their text, a consumer counts the images in each. As the blog
# says right after it ("问题: 消费不知道什么时候结束"), the consumer never learns
# that the work is over: this program does not end by itself (stop it with
# Ctrl-C once the four pages are counted).
# Changed lines: `from multiprocessing import Process,Queue` no longer brings
# Queue; `import requests` became `import local_requests as requests`, a local
# stand-in for the network (local_requests.py here: the n-th get() answers a
# page with n images); `import basin` and the ADDRESS/QUEUE lines (env
# BASIN_ADDRESS, BASIN_QUEUE) are added; `q = Queue()` became
# `q = basin.Queue(QUEUE, address=ADDRESS)`. The BASIN_SEED_FAST line is a test
# shim: when that variable is set, every time.sleep sleeps 1000 times shorter
# (the same races, only faster).
from multiprocessing import Process
import local_requests as requests
import re,os,time,random
import basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-002-requests")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)
# 生产者任务
def product(urls,q):
    i = 0
    for url in urls:
        response = requests.get(url)
        text = response.text
        # 将生产完成的数据放入队列中
        time.sleep(random.random())
        q.put(text)
        i += 1
        print(os.getpid(),"生产了第%s个数据" % i)

def customer(q):
    i = 0
    while True:
        text = q.get()
        time.sleep(random.random())
        res = re.findall('src=//(.*?) width', text)
        i += 1
        print(" 第%s个任务获取到%s个img" % (i,len(res)))    
if __name__ == '__main__':
    urls = [
        "http://www.baidu.com",
        "http://www.baidu.com",
        "http://www.baidu.com",
        "http://www.baidu.com",
    ]

    # 创建一个双方能共享的容器
    q = basin.Queue(QUEUE, address=ADDRESS)

    # 生产者进程
    p1 = Process(target=product,args=(urls,q))
    p1.start()

    # 消费者进程
    c = Process(target=customer,args=(q,))
    c.start()

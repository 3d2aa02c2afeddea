# Ported from seeds/002_996207f951c90cf5.txt, 案例进阶 (hot dogs): two producer
# processes, one consumer calling task_done(); the main process joins the
# producers, then the queue, then terminate()s the consumer.
# Changed lines: `from multiprocessing import Process,JoinableQueue` no longer
# brings JoinableQueue; `import requests` (unused here) became
# `import local_requests as requests`, the local stand-in for the network;
# `import basin` and the ADDRESS/QUEUE lines (env BASIN_ADDRESS, BASIN_QUEUE)
# are added; `q = JoinableQueue()` became
# `q = basin.JoinableQueue(QUEUE, address=ADDRESS)`. The BASIN_SEED_FAST line is
# a test shim: when that variable is set, every time.sleep sleeps 1000 times
# shorter (the same races, only faster).
from multiprocessing import Process
import local_requests as requests
import re,os,time,random
import basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-002-hotdog")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)

"""
生产者 负责生产热狗 
消费者 负责吃热狗  

"""
# 生产者任务
def product(q,name):
    for i in range(5):
        dog = "%s的热狗%s" % (name,(i + 1))
        time.sleep(random.random())
        print("生产了",dog)
        q.put(dog)

# 吃热狗
def customer(q):
    while True:
        dog = q.get()
        time.sleep(random.random())
        print("消费了%s" % dog)
        q.task_done() # 标记这个任务处理完成      
if __name__ == '__main__':
    # 创建一个双方能共享的容器
    q = basin.JoinableQueue(QUEUE, address=ADDRESS)
    # 生产者进程
    p1 = Process(target=product,args=(q,"上海分店"))
    p2 = Process(target=product,args=(q,"北京分店"))
    p1.start()
    p2.start()
    # 消费者进程
    c = Process(target=customer,args=(q,))
    # c.daemon = True # 可以将消费者设置为守护进程 当主进程确认 任务全部完成时 可以随着主进程一起结束
    c.start()
    p1.join()
    p2.join()  # 代码走到这里意味着生产方完成
    q.join() # 意味着队列中的任务都处理完成了
    # 结束所有任务
    c.terminate() # 直接终止消费者进程
    # 如何判定今天的热狗真的吃完了
    # 1.确定生成者任务完成
    # 2.确定生出来的数据已经全部处理完成

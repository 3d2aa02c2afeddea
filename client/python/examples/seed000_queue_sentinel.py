# Ported from seeds/000_88ee0c8bc8a162c5.txt, 生产者消费者模型 "测试代码":
# one producer, one consumer, a None sentinel.
# Changed lines: `from multiprocessing import Queue,Process` no longer brings
# Queue; `import os, basin` and the ADDRESS/QUEUE lines (env BASIN_ADDRESS,
# BASIN_QUEUE) are added; `q=Queue()` became `q=basin.Queue(QUEUE, address=ADDRESS)`.
# The BASIN_SEED_FAST line is a test shim: when that variable is set, every
# time.sleep sleeps 1000 times shorter (the same races, only faster).
import time
import random
from multiprocessing import Process
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-000-queue")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)

def consumer(name,q):
    while True:
        res=q.get()
        if res is None:break
        time.sleep(random.randint(1,3))
        print('\033[40m 食客%s 开始吃%s'%(name,res))

def producer(name,q):
    for i in range(5):
        time.sleep(random.randint(1,2))
        res='炒粉%s'%i
        q.put(res)
        print('\033[40m 厨师%s 生产了%s'%(name,res))

if __name__ == '__main__':
    q=basin.Queue(QUEUE, address=ADDRESS)#一个队列

    p1=Process(target=producer,args=('老刘',q))
    c1=Process(target=consumer,args=('小明',q))
#    c2=Process(target=consumer,args=('小红',q))

    p1.start()
    c1.start()
#    c2.start()
    p1.join()
    q.put(None)

# Ported from seeds/001_42a7d2a0d07a8e83.txt, 2.2 生产者消费者模型2: three
# producers, two consumers (get with timeout=3), one None per consumer once
# the producers are joined.
# Changed lines: `from multiprocessing import Process,Queue` no longer brings
# Queue; `import os, basin` and the ADDRESS/QUEUE lines (env BASIN_ADDRESS,
# BASIN_QUEUE) are added; `q = Queue()` became
# `q = basin.Queue(QUEUE, address=ADDRESS)`. The BASIN_SEED_FAST line is a test
# shim: when that variable is set, every time.sleep sleeps 1000 times shorter
# (the same races, only faster). (The blog's sample output is left out.)
from multiprocessing import Process
import time,random
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-001-model2")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)
def producer(q,name,food):
    """生产者"""
    for i in range(1,4):
        print(f'{name}生产了{food}{i}')
        time.sleep(random.randint(1,3))
        res = f'{food}{i}'
        q.put(res)
def consumer(q,name):
    """消费者"""
    while True:
        res = q.get(timeout=3)
        if res is None:break
        time.sleep(random.randint(1,3))
        print(f'{name}吃了{res}')
if __name__ == '__main__':
    q = basin.Queue(QUEUE, address=ADDRESS)
    p1 = Process(target=producer,args=(q,'ocean','包子'))
    p2 = Process(target=producer,args=(q,'sky','韭菜'))
    p3 = Process(target=producer,args=(q,'rocky','酒'))
    c1 = Process(target=consumer,args=(q,'nick'))
    c2 = Process(target=consumer,args=(q,'mac'))
    p1.start()
    p2.start()
    p3.start()
    c1.start()
    c2.start()
    p1.join()
    p2.join()
    p3.join()#生产者生产完毕
    q.put(None)#存在几个消费者，put几次None
    q.put(None)
    # for i in range(2):
    #     q.put(None)

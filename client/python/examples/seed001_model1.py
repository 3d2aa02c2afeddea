# Ported from seeds/001_42a7d2a0d07a8e83.txt, 2.1 生产者消费者模型1: one producer
# puts ten items and a None sentinel, one consumer gets with timeout=3.
# Changed lines: `from multiprocessing import Process,Queue` no longer brings
# Queue; `import os, basin` and the ADDRESS/QUEUE lines (env BASIN_ADDRESS,
# BASIN_QUEUE) are added; `q = Queue()` became
# `q = basin.Queue(QUEUE, address=ADDRESS)`. (The sample output printed in the
# blog's code block, after the code, is left out.)
from multiprocessing import Process
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-001-model1")
def producer(q,name,food):
    """生产者"""
    for i in range(1,11):
        print(f'{name}生产{food}{i}')
        res = f'{food}{i}'
        q.put(res)
    q.put(None)
def consumer(q,name):
    """消费者"""
    while True:
        res = q.get(timeout=3)
        if res is None:break
        print(f'{name}吃了{res}')
if __name__ == '__main__':
    q = basin.Queue(QUEUE, address=ADDRESS)
    p1 = Process(target=producer,args=(q,'ocean','包子'))
    c1 = Process(target=consumer,args=(q,'chen'))
    p1.start()
    c1.start()

# Ported from seeds/001_42a7d2a0d07a8e83.txt, 2.3.2 JionableQueue队列实现生产者消费者模型:
# three producers, two daemon consumers calling task_done(), the main process
# joins the producers and then the queue; the daemon consumers end with it.
# Changed lines: `from multiprocessing import Process, JoinableQueue` no longer
# brings JoinableQueue; `import os, basin` and the ADDRESS/QUEUE lines (env
# BASIN_ADDRESS, BASIN_QUEUE) are added; `q = JoinableQueue()` became
# `q = basin.JoinableQueue(QUEUE, address=ADDRESS)`. The BASIN_SEED_FAST line is
# a test shim: when that variable is set, every time.sleep sleeps 1000 times
# shorter (the same races, only faster). (The blog's sample output is left out.)

from multiprocessing import Process
import time, random
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-001-joinable")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)


def producer(q, name, food):
    """生产者"""
    for i in range(3):
        print(f'{name}生产了{food}{i}')
        time.sleep(random.randint(1, 3))
        res = f'{food}{i}'
        q.put(res)


def consumer(q, name):
    """消费者"""
    while True:
        res = q.get()
        time.sleep(random.randint(1, 3))
        print(f'{name}吃了{res}')
        q.task_done()  # 用来计数


if __name__ == '__main__':
    q = basin.JoinableQueue(QUEUE, address=ADDRESS)
    p1 = Process(target=producer, args=(q, 'ocean', '包子'))
    p2 = Process(target=producer, args=(q, 'chen', '菜'))
    p3 = Process(target=producer, args=(q, 'nick', '酒'))
    c1 = Process(target=consumer, args=(q, 'pocky'))
    c2 = Process(target=consumer, args=(q, 'mac'))
    p1.start()
    p2.start()
    p3.start()
    c1.daemon = True  # 定义为收回进程
    c2.daemon = True
    c1.start()
    c2.start()
    p1.join()
    p2.join()
    p3.join()  # 生产者生产完毕
    q.join()
    # 生产者生产完毕--这是主程序的最后一行代码，执行后结束---q.join()消费者已经取干净了，没有存在的意思了。
    # 这个是主程序的最后一行代码结束，守护进程结束，也是守护进程的概念

# Ported from seeds/003_1f0f8c216f4f78d5.txt, 队列的应用:生产者消费者模型, third program
# (如果生产者有多个，消费者也有多个): three producers, two consumers, one None per
# consumer once the producers are joined.
# One more line differs: `p3.start()` is added. The seed forgets it, so its
# `p3.join()` raises AssertionError ("can only join a started process"), no
# None is ever put and the consumers wait for ever; the output printed in the
# blog shows three producers, so the program that was run had it.
# Changed lines: `from multiprocessing import Process,Queue` no longer brings
# Queue; `import os, basin` and the ADDRESS/QUEUE lines (env BASIN_ADDRESS,
# BASIN_QUEUE) are added; `q=Queue()` became `q=basin.Queue(QUEUE, address=ADDRESS)`.
# The BASIN_SEED_FAST line is a test shim: when that variable is set, every
# time.sleep sleeps 1000 times shorter (the same races, only faster).
from multiprocessing import Process
import time
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-003-many")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)

def producer(q):
    for i in range(10):
        res="包子 %s "%i
        time.sleep(0.5)
        print("生产者生产了 %s"%res)
        q.put(res)

        # consumer(res)



def consumer(q):
    while True:
        res=q.get()
        if res is None:break
        time.sleep(1)
        print("消费者吃了 %s" % res)#消费者一只在取，然后就卡了




if __name__ == '__main__':
    #容器
    q=basin.Queue(QUEUE, address=ADDRESS)

    #生产者们
    p1=Process(target=producer,args=(q,))
    p2=Process(target=producer,args=(q,))
    p3=Process(target=producer,args=(q,))

    #消费者们
    c1=Process(target=consumer,args=(q,))
    c2=Process(target=consumer,args=(q,))


    p1.start()
    p2.start()
    p3.start()  # added: missing in the seed (see the header)
    c1.start()
    c2.start()

    p1.join()
    p2.join()
    p3.join()
    q.put(None)
    q.put(None)#有几个消费者就应该有几个结束信号
    print("主")

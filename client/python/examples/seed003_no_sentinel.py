# Ported from seeds/003_1f0f8c216f4f78d5.txt, 队列的应用:生产者消费者模型, first program:
# one producer, one consumer, no end signal. As the blog says after it
# ("问题:程序一直卡着这里，并没有结束"), the consumer blocks on the empty queue
# for ever once the ten items are eaten: stop it with Ctrl-C.
# Changed lines: `from multiprocessing import Process,Queue` no longer brings
# Queue; `import os, basin` and the ADDRESS/QUEUE lines (env BASIN_ADDRESS,
# BASIN_QUEUE) are added; `q=Queue()` became `q=basin.Queue(QUEUE, address=ADDRESS)`.
# The BASIN_SEED_FAST line is a test shim: when that variable is set, every
# time.sleep sleeps 1000 times shorter (the same races, only faster).
from multiprocessing import Process
import time
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-003-no-sentinel")
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
        time.sleep(1)
        print("消费者吃了 %s" % res)#消费者一只在取，然后就卡了




if __name__ == '__main__':
    #容器
    q=basin.Queue(QUEUE, address=ADDRESS)

    #生产者们
    p1=Process(target=producer,args=(q,))

    #消费者们
    c1=Process(target=consumer,args=(q,))


    p1.start()
    c1.start()
    print("主")

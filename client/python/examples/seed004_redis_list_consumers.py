# Ported from seeds/004_ffd8f29de4ed5eef.txt, 消费者开启多进程 (consumers): three
# processes LPOP the Redis list "goods2" under a multiprocessing Lock.
# The seed lost its indentation and its numbers in extraction: indentation is
# restored, the numbers chosen small (compare with 0, sleep 1 s, 3 processes).
# Changed lines: `import redis` became `import os, basin` plus the
# ADDRESS/QUEUE lines (env BASIN_ADDRESS, BASIN_QUEUE; the queue stands for the
# list "goods2"); the redis.ConnectionPool(...) and redis.Redis(...) lines
# became `q = basin.Queue(QUEUE, address=ADDRESS)`; `r.llen("goods2")` became
# `q.qsize()` and `r.lpop("goods2")` became
# `q.get_nowait() if not q.empty() else None` (LPOP answers None on an empty
# list where get_nowait raises basin.Empty; under the lock no other consumer
# of this program can take the item in between).
# As in the seed, the consumers poll for ever (stop them with Ctrl-C), and
# each reads the length once, when it starts: one that finds the list empty
# takes the lock in its `else` branch and never releases it, which stops every
# consumer. Start them once the list holds plenty (the blog's producer put
# 10,000 items; seed004_redis_list_producer.py prints 长度过大睡一会 at 101).
# The BASIN_SEED_FAST line is a test shim: when that variable is set, every
# time.sleep sleeps 1000 times shorter (the same races, only faster).
import time
from multiprocessing import Process,Lock
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "goods2")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)
q = basin.Queue(QUEUE, address=ADDRESS)
def users(lock):
    length = q.qsize()
    print(length)
    while True:
        # print(1)
        # 对资源进行加锁
        lock.acquire()
        if length > 0:
            goods = q.get_nowait() if not q.empty() else None
            # 获得资源后释放锁
            lock.release()
            #以下可以写自己的业务逻辑操作
            try:
                data = goods
                print(data)
                if str(goods) == "None":
                    print("无值多等等")
                    time.sleep(1)
            except:
                print("无值等等")
                time.sleep(1)
                users()
        else:
            print("无值等等")
            time.sleep(1)
            users(lock)
if __name__ == '__main__':
    lock = Lock()
    processes = []
    for i in range(3):
        p = Process(target=users, args=(lock,))
        p.start()
        processes.append(p)
    for p in processes:
        p.join()
    print('处理完成')

# Ported from seeds/004_ffd8f29de4ed5eef.txt, 生产者 (producer): while the Redis
# list "goods2" is longer than a bound it sleeps and retries, else it LPUSHes
# one more item.
# The seed lost its indentation and its numbers in extraction: indentation is
# restored, the numbers chosen small (bound 100, retry sleep 10 s, 300 items).
# Changed lines: `from DBUtil import *` (which provided `r`), `from pandasql
# import sqldf` (unused) and `import redis` became `import os, basin` plus the
# ADDRESS/QUEUE lines (env BASIN_ADDRESS, BASIN_QUEUE; the queue stands for the
# list "goods2") and the constructor `q = basin.Queue(QUEUE, address=ADDRESS)`;
# `r.llen("goods2")` became `q.qsize()` and `r.lpush("goods2", ...)` became
# `q.put(...)` (a FIFO: Redis's LPUSH with LPOP takes the newest first).
# The BASIN_SEED_FAST line is a test shim: when that variable is set, every
# time.sleep sleeps 1000 times shorter (the same races, only faster).
import time
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "goods2")
if os.environ.get("BASIN_SEED_FAST"): time.sleep = lambda s, _sleep=time.sleep: _sleep(s / 1000)
q = basin.Queue(QUEUE, address=ADDRESS)
def product(i):
    length=q.qsize()
    print(length)
    if length>100:
        print("长度过大睡一会")
        time.sleep(10)
        product(i)
    else:
        #生产者
        q.put("good1"+str(i))
        print("加入一个值睡一会")
        # time.sleep(5)
if __name__ == '__main__':
    # 此处表示循环10000次,往redis里面放10000次数据
    for i in range(300):
        product(i)

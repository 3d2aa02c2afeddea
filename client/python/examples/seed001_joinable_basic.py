# Ported from seeds/001_42a7d2a0d07a8e83.txt, 2.3.1 JoinableQueue([maxsize]):
# two puts, two get/task_done pairs, then join() returns at once.
# Changed lines: `from multiprocessing import JoinableQueue` became
# `import os, basin` plus the ADDRESS/QUEUE lines (env BASIN_ADDRESS,
# BASIN_QUEUE); `q = JoinableQueue()` became
# `q = basin.JoinableQueue(QUEUE, address=ADDRESS)`. (The blog's sample output
# is left out.)
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-001-joinable-basic")
#用法和Queue相似
q = basin.JoinableQueue(QUEUE, address=ADDRESS)
q.put('ocean')#队列放入一个任务，内存在一个计数机制，+1
q.put('can')#计数机制 +1
print(q.get())
q.task_done()#完成一次任务，计数机制-1
print(q.get())
q.task_done()#计数机制  -1
q.join()#计数机制不为0的时候，阻塞等待计数器为0后通过

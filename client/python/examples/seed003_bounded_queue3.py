# Ported from seeds/003_1f0f8c216f4f78d5.txt, 进程queue: the Queue(3) block
# (three puts, full() is True) followed by the block that takes them back
# (three gets), as one program.
# Changed lines: `from multiprocessing import Queue` became `import os, basin`
# plus the ADDRESS/QUEUE lines (env BASIN_ADDRESS, BASIN_QUEUE);
# `q=Queue(3)` became `q=basin.Queue(QUEUE, 3, address=ADDRESS)`.
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
QUEUE = os.environ.get("BASIN_QUEUE", "seed-003-bounded")

q=basin.Queue(QUEUE, 3, address=ADDRESS)

q.put("hello")
q.put({"a":3})
q.put([1,2,3])

print(q.full())

print(q.get())
print(q.get())
print(q.get())

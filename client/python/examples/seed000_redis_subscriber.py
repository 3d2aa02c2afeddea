# Ported from seeds/000_88ee0c8bc8a162c5.txt, 发布者订阅者模型, 订阅者 (subscriber):
# subscribes to 'spub' and 'cctv1' and prints what it hears.
# Changed lines: `import redis` became `import os, basin` plus the ADDRESS line
# (env BASIN_ADDRESS); the redis.ConnectionPool(...) and redis.StrictRedis(...)
# lines became `r=basin.Client(ADDRESS)`; `p=r.pubsub()` is unchanged (it is a
# basin.PubSub, shaped like redis-py's).
# As with redis-py, item['data'] is bytes, so the seed's `item['data']=='over'`
# is never true: the loop does not end on 'over' and the program runs until
# it is stopped (Ctrl-C), exactly like the original.
#!/usr/bin/env python
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
r=basin.Client(ADDRESS)
p=r.pubsub()
p.subscribe("spub","cctv1")
for item in p.listen():
    print("Listen on channel : %s "%item['channel'].decode())
    if item['type']=='message':
        data=item['data'].decode()
        print("From %s get message : %s"%(item['channel'].decode(),item['data'].decode()))
        if item['data']=='over':
            print(item['channel'].decode(),'停止发布')
            break
p.unsubscribe('spub')
print("取消订阅")

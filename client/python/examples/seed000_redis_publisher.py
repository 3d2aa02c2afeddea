# Ported from seeds/000_88ee0c8bc8a162c5.txt, 发布者订阅者模型, 发布者 (publisher):
# reads lines and publishes each to topic 'spub' until "over" (which it does
# not publish).
# Changed lines: `import redis` became `import os, basin` plus the ADDRESS line
# (env BASIN_ADDRESS); the redis.ConnectionPool(...) and redis.StrictRedis(...)
# lines became `r=basin.Client(ADDRESS)`, whose publish(topic, data) is
# redis-py's (it returns the number of subscriptions reached).
#!/usr/bin/env python
#coding:utf-8
import os, basin
ADDRESS = os.environ.get("BASIN_ADDRESS", "127.0.0.1:7878")
r=basin.Client(ADDRESS)
while True:
    msg=input("publish: >>")
    if msg=="over":
        print("停止发布")
        break
    r.publish('spub',msg)

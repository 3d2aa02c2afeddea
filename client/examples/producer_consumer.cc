// The seed's producer/consumer model across the network: three producers, two
// consumers, join() to know the work is done, close() instead of None sentinels.
//   producer_consumer [HOST:PORT]
#include <basin/client.h>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  const std::string addr = argc > 1 ? argv[1] : "127.0.0.1:7878";
  basin::Client client(addr);
  auto q = client.queue("examples.food", {.max_size = 3});

  std::vector<std::thread> consumers;
  for (const std::string name : {"nick", "mac"}) {
    consumers.emplace_back([&client, name] {
      auto mine = client.queue("examples.food");
      try {
        for (;;) {
          basin::Message m = mine.get();
          std::cout << name + " ate " + m.payload() + "\n";
          mine.task_done(m);
        }
      } catch (const basin::Closed&) {
        // end of stream: the queue is closed and drained
      }
    });
  }
  std::vector<std::thread> producers;
  for (const std::string food : {"bun", "leek", "wine"}) {
    producers.emplace_back([&q, food] {
      for (int i = 1; i <= 3; ++i) q.put(food + std::to_string(i));
    });
  }
  for (auto& p : producers) p.join();
  q.join();   // every item has been task_done
  q.close();  // consumers leave their loops
  for (auto& c : consumers) c.join();
  client.delete_queue("examples.food");
  std::cout << "all work done\n";
  return 0;
}

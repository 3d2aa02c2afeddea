// A consumer process for tests that kill or freeze consumers.
//   worker ADDR QUEUE hold    get one message, print its payload, then wait
//                             on stdin forever without acknowledging it
//   worker ADDR QUEUE block   block in get() on the queue; print what arrives
//   worker ADDR QUEUE consume a Consume stream with prefetch 20: take 20
//                             messages, ack the first 5, print "held", wait
//   worker ADDR TOPIC subscribe
//                             subscribe to the topic, print "ready" once live,
//                             then print each payload
#include <iostream>
#include <string>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: worker ADDR QUEUE hold|block, or worker ADDR TOPIC subscribe\n";
    return 2;
  }
  basin::Client client(argv[1]);
  const std::string mode = argv[3];
  if (mode == "consume") {
    basin::Consumer consumer(client, argv[2], {.prefetch = 20});
    std::vector<basin::Message> got;
    while (got.size() < 20) got.push_back(*consumer.next());
    for (int i = 0; i < 5; ++i) consumer.ack(got[static_cast<size_t>(i)]);
    consumer.flush();
    std::cout << "held" << std::endl;
    std::string ignored;
    std::getline(std::cin, ignored);
    return 0;
  }
  if (mode == "subscribe") {
    auto sub = client.subscribe({argv[2]});
    std::cout << "ready" << std::endl;
    for (const auto& m : sub) std::cout << m.payload << std::endl;
    return 0;
  }
  auto q = client.queue(argv[2]);
  basin::Message m = q.get();
  std::cout << m.payload() << std::endl;
  if (mode == "hold") {
    std::string ignored;
    std::getline(std::cin, ignored);
  }
  return 0;
}

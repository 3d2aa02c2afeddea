// A consumer process for tests that kill or freeze consumers.
//   worker ADDR QUEUE hold    get one message, print its payload, then wait
//                             on stdin forever without acknowledging it
//   worker ADDR QUEUE block   block in get() on the queue; print what arrives
#include <iostream>
#include <string>

#include "basin/client.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: worker ADDR QUEUE hold|block\n";
    return 2;
  }
  basin::Client client(argv[1]);
  auto q = client.queue(argv[2]);
  const std::string mode = argv[3];
  basin::Message m = q.get();
  std::cout << m.payload() << std::endl;
  if (mode == "hold") {
    std::string ignored;
    std::getline(std::cin, ignored);
  }
  return 0;
}

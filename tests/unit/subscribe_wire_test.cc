// The Subscribe stream's hand-written bytes parse as the SubscribeResponse
// they stand for, and a large body is referenced, not copied.
#include "broker/service/subscribe_wire.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "basin/v1/topic.pb.h"

namespace basin::service {
namespace {

core::PublishedPtr Published(std::string topic, std::string payload, core::Headers headers = {}) {
  auto m = std::make_shared<core::PublishedMessage>();
  m->topic = std::move(topic);
  m->payload = std::move(payload);
  m->headers = std::move(headers);
  return m;
}

v1::SubscribeResponse Parse(grpc::ByteBuffer buffer) {
  v1::SubscribeResponse out;
  EXPECT_TRUE(grpc::SerializationTraits<v1::SubscribeResponse>::Deserialize(&buffer, &out).ok());
  return out;
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

TEST(SubscribeWireTest, BytesAreProtobufsForPlainMessages) {
  const std::string pattern = "news.*";
  std::vector<core::Delivered> batch = {
      {Published("news.eu", "hello"), nullptr, 0},
      {Published("news.fr", ""), &pattern, 3},
      {Published("a", std::string(300, 'x')), nullptr, 1'000'000},
  };
  v1::SubscribeResponse want;
  for (const core::Delivered& d : batch) {
    v1::TopicMessage* m = want.add_messages();
    m->set_topic(d.message->topic);
    if (d.pattern != nullptr) m->set_pattern(*d.pattern);
    m->set_payload(d.message->payload);
    m->set_dropped_before(d.dropped_before);
  }
  EXPECT_EQ(Bytes(EncodeMessages(batch)), want.SerializeAsString());
}

TEST(SubscribeWireTest, HeadersAndLargeBodiesParseBack) {
  const std::string big(kSharedBodyBytes * 3, 'b');
  std::vector<core::Delivered> batch = {
      {Published("t", big, {{"k", "v"}, {"", "empty key"}, {"empty value", ""}}), nullptr, 2},
      {Published("t", "small", {{"trace", "1"}}), nullptr, 0},
      {Published("t", std::string(kSharedBodyBytes, 'e')), nullptr, 0},  // just at the line
  };
  const v1::SubscribeResponse got = Parse(EncodeMessages(batch));
  ASSERT_EQ(got.messages_size(), 3);
  EXPECT_EQ(got.messages(0).payload(), big);
  EXPECT_EQ(got.messages(0).dropped_before(), 2u);
  ASSERT_EQ(got.messages(0).headers().size(), 3u);
  EXPECT_EQ(got.messages(0).headers().at("k"), "v");
  EXPECT_EQ(got.messages(0).headers().at(""), "empty key");
  EXPECT_EQ(got.messages(0).headers().at("empty value"), "");
  EXPECT_EQ(got.messages(1).payload(), "small");
  EXPECT_EQ(got.messages(1).headers().at("trace"), "1");
  EXPECT_EQ(got.messages(2).payload(), std::string(kSharedBodyBytes, 'e'));
  EXPECT_FALSE(got.has_subscribed());
}

TEST(SubscribeWireTest, LargeBodyIsSharedUntilTheBufferGoes) {
  const core::PublishedPtr message = Published("t", std::string(kSharedBodyBytes * 4, 'z'));
  const core::PublishedPtr small = Published("t", "tiny");
  {
    // Two subscribers' responses: each holds the message, neither copies it.
    grpc::ByteBuffer one = EncodeMessages({{message, nullptr, 0}, {small, nullptr, 0}});
    grpc::ByteBuffer two = EncodeMessages({{message, nullptr, 0}});
    EXPECT_EQ(message.use_count(), 3);
    EXPECT_EQ(small.use_count(), 1);  // copied into the frame instead
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(two.Dump(&slices).ok());
    bool referenced = false;
    for (const grpc::Slice& s : slices) {
      referenced |= reinterpret_cast<const char*>(s.begin()) == message->payload.data();
    }
    EXPECT_TRUE(referenced);
  }
  EXPECT_EQ(message.use_count(), 1);
}

}  // namespace
}  // namespace basin::service

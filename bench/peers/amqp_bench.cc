// Load client for RabbitMQ (AMQP 0-9-1 with Debian's librabbitmq): transient
// messages to a classic queue through the default exchange; consumers with
// prefetch 500 and manual acks (one multiple-ack per 100 deliveries, or per
// delivery with --rate). With --durable 1: a durable queue, persistent
// messages and publisher confirms (at most kConfirmWindow unconfirmed, the
// way a producer that must not lose work publishes).
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "bench_common.h"

namespace {

amqp_connection_state_t Connect(const bench::Options& o) {
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  if (amqp_socket_open(socket, o.host.c_str(), o.port) != AMQP_STATUS_OK) {
    std::fprintf(stderr, "amqp: cannot connect\n");
    std::exit(1);
  }
  amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
  amqp_channel_open(conn, 1);
  amqp_get_rpc_reply(conn);
  return conn;
}

void Close(amqp_connection_state_t conn) {
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

constexpr uint64_t kConfirmWindow = 1000;

// Reads frames until at least `until` publishes are confirmed.
void AwaitConfirms(amqp_connection_state_t conn, uint64_t until, uint64_t* confirmed) {
  while (*confirmed < until) {
    amqp_frame_t frame;
    if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) {
      std::fprintf(stderr, "amqp: connection lost while waiting for confirms\n");
      std::exit(1);
    }
    if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
      *confirmed = std::max(*confirmed, ack->delivery_tag);
    }
  }
  amqp_maybe_release_buffers(conn);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::Parse(argc, argv);
  const std::string queue = "bench." + std::to_string(bench::NowNs());
  {
    amqp_connection_state_t conn = Connect(o);
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue.c_str()), 0, o.durable ? 1 : 0, 0, 0,
                       amqp_empty_table);
    amqp_get_rpc_reply(conn);
    Close(conn);
  }
  std::atomic<long> received{0};
  bench::Latencies lat;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < o.consumers; ++i) {
    threads.emplace_back([&] {
      amqp_connection_state_t conn = Connect(o);
      amqp_basic_qos(conn, 1, 0, 500, 0);
      amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0, 0,
                         amqp_empty_table);
      amqp_get_rpc_reply(conn);
      std::vector<int64_t> local;
      long unacked = 0;
      const long ack_every = o.rate > 0 ? 1 : 100;
      timeval timeout{1, 0};
      while (received.load() < o.messages) {
        amqp_envelope_t env;
        amqp_maybe_release_buffers(conn);
        const amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &timeout, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) continue;
        local.push_back(bench::NowNs() -
                        bench::SentAt(static_cast<const char*>(env.message.body.bytes)));
        ++received;
        if (++unacked >= ack_every || received.load() >= o.messages) {
          amqp_basic_ack(conn, 1, env.delivery_tag, 1);
          unacked = 0;
        }
        amqp_destroy_envelope(&env);
      }
      lat.Add(local);
      Close(conn);
    });
  }
  for (int p = 0; p < o.producers; ++p) {
    threads.emplace_back([&, p] {
      amqp_connection_state_t conn = Connect(o);
      const long n = o.messages / o.producers + (p < o.messages % o.producers ? 1 : 0);
      amqp_basic_properties_t props;
      props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
      props.delivery_mode = o.durable ? 2 : 1;  // persistent : transient
      uint64_t confirmed = 0;
      if (o.durable) {
        amqp_confirm_select(conn, 1);
        amqp_get_rpc_reply(conn);
      }
      for (long i = 0; i < n; ++i) {
        const auto published = static_cast<uint64_t>(i);
        if (o.durable && published - confirmed >= kConfirmWindow) {
          AwaitConfirms(conn, published - kConfirmWindow / 2, &confirmed);
        }
        bench::Pace(start, i, static_cast<double>(o.rate) / o.producers);
        const std::string payload = bench::Payload(o.size);
        amqp_bytes_t body{payload.size(), const_cast<char*>(payload.data())};
        amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue.c_str()), 0, 0,
                           &props, body);
      }
      if (o.durable) AwaitConfirms(conn, static_cast<uint64_t>(n), &confirmed);
      Close(conn);
    });
  }
  for (auto& t : threads) t.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (o.consumers > 0) {  // without consumers the queue stays, for memory figures
    amqp_connection_state_t conn = Connect(o);
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(queue.c_str()), 0, 0);
    Close(conn);
  }
  bench::Report("rabbitmq", o, secs, received.load(), lat);
  return 0;
}

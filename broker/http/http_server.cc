// Boost.Beast lives in this file only: it costs some 15 s to compile.
#include "broker/http/http_server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

namespace basin::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// For a whole request, and for the idle time before the next on a kept-alive
// connection: a client cannot hold one of the kMaxConnections for long
// without sending.
constexpr auto kRequestTimeout = std::chrono::seconds(10);
// After a failed accept (EMFILE: out of descriptors) wait before the next.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
constexpr uint32_t kHeaderLimit = 8 << 10;
constexpr uint64_t kBodyLimit = 64 << 10;

// "127.0.0.1:9464", "[::1]:9464", "localhost:9464", ":9464" (all IPv4
// addresses): a name is resolved once, here, and its first address used.
bool ParseListen(net::io_context& io, const std::string& listen, tcp::endpoint* out,
                 std::string* error) {
  const auto colon = listen.rfind(':');
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535) {
    *error = "'" + listen + "' is not host:port";
    return false;
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  boost::system::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (!ec) {
    *out = tcp::endpoint(address, static_cast<unsigned short>(std::stoul(port)));
    return true;
  }
  tcp::resolver resolver(io);
  const auto found = resolver.resolve(host, port, ec);
  if (ec || found.empty()) {
    *error = "cannot resolve '" + host + "': " + (ec ? ec.message() : "no address");
    return false;
  }
  *out = found.begin()->endpoint();
  return true;
}

}  // namespace

struct HttpServer::Impl {
  Handler handler;
  // Before io: the sessions its destruction frees count themselves out.
  std::atomic<int> connections{0};
  net::io_context io{1};
  tcp::acceptor acceptor{io};
  net::steady_timer backoff{io};
  std::string address;
  std::thread thread;
  bool stopped = false;

  void Accept();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server) {
    server_->connections.fetch_add(1);
  }
  ~Session() { server_->connections.fetch_sub(1); }

  void Read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    stream_.expires_after(kRequestTimeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted) {
      return Close();
    }
    if (ec) {
      // A malformed or oversize request: say so once, then hang up.
      Respond({400, "text/plain; charset=utf-8", "bad request: " + ec.message() + "\n", {}}, false,
              11, false);
      return;
    }
    const auto& req = parser_->get();
    Request request;
    request.method = std::string(req.method_string());
    const std::string target(req.target());
    const auto q = target.find('?');
    request.path = target.substr(0, q);
    if (q != std::string::npos) request.query = target.substr(q + 1);
    const auto action = req.find("X-Basin-Action");
    request.action_header = action != req.end() && action->value() == "1";
    if (const auto host = req.find(bhttp::field::host); host != req.end()) {
      request.host = std::string(host->value());
    }
    if (const auto auth = req.find(bhttp::field::authorization); auth != req.end()) {
      request.authorization = std::string(auth->value());
    }
    beast::error_code peer_error;
    const auto peer = stream_.socket().remote_endpoint(peer_error);
    if (!peer_error) {
      request.peer = std::string(peer.address().is_v4() ? "ipv4:" : "ipv6:[") +
                     peer.address().to_string() + (peer.address().is_v4() ? ":" : "]:") +
                     std::to_string(peer.port());
    }
    Response response;
    try {
      response = server_->handler(request);
    } catch (const std::exception& e) {
      spdlog::error("http {} {}: {}", request.method, request.path, e.what());
      response = {500, "text/plain; charset=utf-8", "internal error\n", {}};
    }
    Respond(std::move(response), req.keep_alive(), req.version(),
            req.method() == bhttp::verb::head);
  }

  // A HEAD answer has the GET's headers, its Content-Length included, and
  // no body.
  void Respond(Response r, bool keep_alive, unsigned version, bool head) {
    res_ = {};
    res_.version(version);
    res_.result(r.status);
    res_.set(bhttp::field::server, "basind");
    res_.set(bhttp::field::content_type, r.content_type);
    res_.set(bhttp::field::cache_control, "no-store");
    // The dashboard loads nothing from elsewhere; say so to the browser.
    res_.set("X-Content-Type-Options", "nosniff");
    if (!r.allow.empty()) res_.set(bhttp::field::allow, r.allow);
    res_.keep_alive(keep_alive);
    res_.body() = std::move(r.body);
    res_.prepare_payload();
    if (head) res_.body().clear();
    bhttp::async_write(stream_, res_,
                       [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                         if (ec || !keep_alive) return self->Close();
                         self->Read();
                       });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl* const server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
};

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors and the like: retrying at once would spin.
      backoff.expires_after(kAcceptBackoff);
      backoff.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) Accept();
      });
      return;
    }
    if (connections.load() >= kMaxConnections) {
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<Session>(std::move(socket), this)->Read();
    }
    Accept();
  });
}

std::unique_ptr<HttpServer> HttpServer::Start(const std::string& listen, Handler handler,
                                              std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->handler = std::move(handler);
  tcp::endpoint endpoint;
  if (!ParseListen(impl->io, listen, &endpoint, error)) return nullptr;
  boost::system::error_code ec;
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = "cannot listen on " + listen + ": " + ec.message();
    return nullptr;
  }
  const auto bound = impl->acceptor.local_endpoint(ec);
  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                   : bound.address().to_string();
  impl->address = host + ":" + std::to_string(bound.port());
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    pthread_setname_np(pthread_self(), "basin-http");
    raw->io.run();
  });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

const std::string& HttpServer::address() const { return impl_->address; }

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  net::post(impl_->io, [impl = impl_.get()] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
    impl->io.stop();
  });
  impl_->thread.join();
}

}  // namespace basin::http

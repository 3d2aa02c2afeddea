// The broker's one HTTP listener (--http-listen): /metrics, the dashboard and
// its JSON. One thread, "basin-http", runs every connection on Boost.Asio, so
// a slow scraper or browser never touches a gRPC thread. Bounded: at most
// kMaxConnections at once (more are closed at accept), 8 KiB of headers and
// 64 KiB of body per request, 10 s to send a request, and a connection idle
// that long between requests is closed.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace basin::http {

struct Request {
  std::string method;          // "GET", "POST", ...
  std::string path;            // the target without its query
  std::string query;           // after '?', or empty
  bool action_header = false;  // X-Basin-Action: 1 was sent
  std::string host;            // the Host header
  std::string authorization;   // the Authorization header, or empty
  std::string peer;            // "ipv4:ADDR:PORT" of the client, as gRPC names peers
};

struct Response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow;  // the Allow header of a 405
};

using Handler = std::function<Response(const Request&)>;

class HttpServer {
 public:
  static constexpr int kMaxConnections = 64;

  // Listens on host:port (port 0 picks one) and serves `handler` on its own
  // thread; null with `error` set if the address cannot be bound.
  static std::unique_ptr<HttpServer> Start(const std::string& listen, Handler handler,
                                           std::string* error);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // host:port with the port actually bound.
  const std::string& address() const;
  // Closes the listener and every connection and joins the thread.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace basin::http

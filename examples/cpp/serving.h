// What the C++ leaf and merge share: flags with SCATTER_* environment
// fallbacks, Any unpacking with the contract's INVALID_ARGUMENT, a
// concurrency limit that refuses at once, work that stops on cancellation
// or deadline, and the lifecycle of every scatter/gather process
// (docs/any-language.md): listen, health NOT_SERVING while loading, SERVING
// when ready, and on SIGTERM NOT_SERVING + drain within a grace period.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

namespace scatter {

// Command-line flags, each falling back to an environment variable, then to
// its default. Ask for every flag (integer, real, text), then call done():
// it prints --help or refuses flags nobody asked for. A bad value exits 2
// with a message naming the flag or the variable it came from.
class Flags {
 public:
  Flags(int argc, char** argv);
  std::int64_t integer(const std::string& flag, const char* env, std::int64_t fallback, std::int64_t min,
                       std::int64_t max, const std::string& help);
  double real(const std::string& flag, const char* env, double fallback, double min, double max,
              const std::string& help);
  std::string text(const std::string& flag, const char* env, const std::string& fallback, const std::string& help);
  void done();
  [[noreturn]] void fail(const std::string& message) const;

 private:
  // The raw value and where it came from ("--port", "environment variable SCATTER_PORT"), or false.
  bool raw(const std::string& flag, const char* env, std::string* value, std::string* where);
  void describe(const std::string& flag, const char* env, const std::string& fallback, const std::string& help);

  std::string prog_;
  std::vector<std::pair<std::string, std::string>> given_;  // --name, value, in order
  std::vector<std::string> asked_;
  std::string usage_;
  bool help_ = false;
};

// How a process listens and how much it takes on (the SDKs' names and defaults).
struct ServerOptions {
  std::string host = "127.0.0.1";  // SCATTER_HOST
  int port = 0;                    // SCATTER_PORT; 0: any free port, printed on stderr
  int max_concurrency = 64;        // SCATTER_MAX_CONCURRENCY: calls at once before RESOURCE_EXHAUSTED
  double grace_seconds = 10;       // SCATTER_GRACE_SECONDS: time in-flight calls get to finish on SIGTERM
  double drain_delay_seconds = 0.5;  // SCATTER_DRAIN_DELAY_SECONDS: NOT_SERVING before refusing connections
  std::string tls_cert, tls_key, tls_client_ca;  // SCATTER_TLS_*: serve TLS (mutual with a client CA)

  // The common flags (--host, --port, --max-concurrency, ...) read from `flags`.
  static ServerOptions from_flags(Flags& flags);
};

// The full type name of an Any: what follows the last '/' of its type URL.
std::string type_name(const google::protobuf::Any& any);

// Decodes `any` into `out`, or INVALID_ARGUMENT naming the expected type;
// `what` says whose payload it is ("payload", "payload of shard 2").
grpc::Status unpack(const google::protobuf::Any& any, google::protobuf::Message* out, const std::string& what);

// A concurrency limit: a call takes a slot or is refused at once, never queued.
class Slots {
 public:
  explicit Slots(int limit) : limit_(limit) {}
  int limit() const { return limit_; }
  bool try_acquire();
  void release() { used_.fetch_sub(1); }

 private:
  const int limit_;
  std::atomic<int> used_{0};
};

// A slot held for the scope of one call; held() is false when the limit was reached.
class Slot {
 public:
  explicit Slot(Slots& slots) : slots_(slots), held_(slots.try_acquire()) {}
  ~Slot() {
    if (held_) slots_.release();
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  bool held() const { return held_; }

 private:
  Slots& slots_;
  const bool held_;
};

// Why a call stopped working before its answer was ready.
enum class Stop { kNone, kCancelled, kDeadline };

// kCancelled once the client cancelled the call, kDeadline once its deadline passed, else kNone.
Stop stopped(grpc::ServerContextBase* context);

// Works (here: waits) for `duration` in steps of a few milliseconds, and
// gives up as soon as the call is cancelled or its deadline passes: a
// losing hedge must release its thread and slot at once. kNone when done.
Stop work_for(grpc::ServerContextBase* context, std::chrono::nanoseconds duration);

// The status of a call that stopped: gRPC has already ended it (the caller
// got CANCELLED or DEADLINE_EXCEEDED); this is what the handler returns.
grpc::Status stopped_status(Stop why);

// The time left before the call's deadline, in ms; 0 when it has none.
double remaining_ms(grpc::ServerContextBase* context);

// Answers one unary call whose body arrives as bytes (the generated
// WithRawCallbackMethod_*), so that a body that does not parse gets
// INVALID_ARGUMENT: grpc++'s own decoding would answer INTERNAL before any
// handler runs. Then `handle(context, request, &response)` runs on a thread
// of its own, as a sync handler would: it may block, and checks stopped().
template <class Request, class Response, class Handle>
grpc::ServerUnaryReactor* answer_on_thread(grpc::CallbackServerContext* context, const grpc::ByteBuffer* body,
                                           grpc::ByteBuffer* out, Handle handle) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Request request;
  grpc::ByteBuffer bytes(*body);  // shares the slices; Deserialize consumes its argument
  if (!grpc::SerializationTraits<Request>::Deserialize(&bytes, &request).ok()) {
    reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT,
                     "the request body does not parse as " + Request::descriptor()->full_name()});
    return reactor;
  }
  try {
    std::thread([context, reactor, out, handle, request = std::move(request)] {
      Response response;
      grpc::Status status;
      try {
        status = handle(context, request, &response);  // releases its slot before the answer leaves
      } catch (const std::exception& error) {  // a bug or an I/O error in the handler: INTERNAL, with a message
        status = {grpc::StatusCode::INTERNAL, std::string("the handler failed: ") + error.what()};
      }
      bool own_buffer = false;
      if (status.ok()) status = grpc::SerializationTraits<Response>::Serialize(response, out, &own_buffer);
      reactor->Finish(status);
    }).detach();
  } catch (const std::system_error& error) {  // no thread to be had: shed the call, do not queue it
    reactor->Finish({grpc::StatusCode::RESOURCE_EXHAUSTED, std::string("cannot start a thread: ") + error.what()});
  }
  return reactor;
}

// One serving process: role ("leaf", "merge") and the service it reports in health.
class Process {
 public:
  Process(std::string role, std::string service_name, ServerOptions options);

  // False while loading and draining: handlers answer UNAVAILABLE then.
  bool ready() const { return ready_.load(); }
  const ServerOptions& options() const { return options_; }

  // Listens and serves `service` with health and reflection, runs `load`
  // (NOT_SERVING until it returns), then serves until SIGTERM or SIGINT and
  // drains. Call it before starting any thread of your own (it blocks the
  // signals, which threads inherit). Returns the exit status.
  int run(grpc::Service& service, const std::function<void()>& load);

 private:
  void set_serving(bool serving);
  void drain(grpc::Server* server, const char* signal_name);

  const std::string role_;
  const std::string service_name_;
  const ServerOptions options_;
  std::atomic<bool> ready_{false};
  std::mutex mutex_;  // orders "loaded" against "draining"
  bool draining_ = false;
  grpc::HealthCheckServiceInterface* health_ = nullptr;
};

}  // namespace scatter

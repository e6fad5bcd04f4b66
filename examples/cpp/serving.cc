// The lifecycle, flags and payload rules shared by the C++ leaf and merge (see serving.h).
#include "serving.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

namespace scatter {

namespace {

// An error's message travels in the call's metadata (8 KiB at most): quote a stranger's type URL briefly.
constexpr std::size_t kMaxQuoted = 200;
// Work checks for cancellation this often: a cancelled call frees its slot within a few ms.
constexpr auto kWorkStep = std::chrono::milliseconds(5);

std::string quoted(const std::string& text) {
  if (text.size() <= kMaxQuoted) return "'" + text + "'";
  return "'" + text.substr(0, kMaxQuoted) + "...' (" + std::to_string(text.size()) + " characters)";
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "scatter: cannot read " << what << " " << path << std::endl;
    std::exit(2);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::shared_ptr<grpc::ServerCredentials> credentials(const ServerOptions& options) {
  if (options.tls_cert.empty()) return grpc::InsecureServerCredentials();  // loopback only
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back(
      {read_file(options.tls_key, "SCATTER_TLS_KEY"), read_file(options.tls_cert, "SCATTER_TLS_CERT")});
  if (!options.tls_client_ca.empty()) {
    ssl.pem_root_certs = read_file(options.tls_client_ca, "SCATTER_TLS_CLIENT_CA");
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

// -- flags ------------------------------------------------------------------

Flags::Flags(int argc, char** argv) : prog_(argc > 0 ? argv[0] : "probe") {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "' (flags are --name VALUE)");
    auto equals = arg.find('=');
    if (equals != std::string::npos) {
      given_.emplace_back(arg.substr(0, equals), arg.substr(equals + 1));
    } else if (i + 1 < argc) {
      given_.emplace_back(arg, argv[++i]);
    } else {
      fail("flag " + arg + " needs a value");
    }
  }
}

void Flags::fail(const std::string& message) const {
  std::cerr << prog_ << ": error: " << message << " (--help lists the flags)" << std::endl;
  std::exit(2);
}

bool Flags::raw(const std::string& flag, const char* env, std::string* value, std::string* where) {
  asked_.push_back(flag);
  bool found = false;
  for (const auto& [name, given] : given_) {  // the last one given wins, as with argparse
    if (name == flag) {
      *value = given;
      *where = flag;
      found = true;
    }
  }
  if (found) return true;
  const char* from_env = env ? std::getenv(env) : nullptr;
  if (from_env && *from_env) {
    *value = from_env;
    *where = std::string("environment variable ") + env;
    return true;
  }
  return false;
}

void Flags::describe(const std::string& flag, const char* env, const std::string& fallback,
                     const std::string& help) {
  usage_ += "  " + flag + " VALUE  " + help + " (default " + fallback + (env ? std::string(", env ") + env : "") +
            ")\n";
}

std::int64_t Flags::integer(const std::string& flag, const char* env, std::int64_t fallback, std::int64_t min,
                            std::int64_t max, const std::string& help) {
  describe(flag, env, std::to_string(fallback), help);
  std::string value, where;
  if (!raw(flag, env, &value, &where)) return fallback;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(value.c_str(), &end, 10);
  if (errno || end == value.c_str() || *end != '\0') fail(where + "=" + quoted(value) + ": not an integer");
  if (parsed < min || parsed > max) {
    fail(where + "=" + value + ": must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return parsed;
}

double Flags::real(const std::string& flag, const char* env, double fallback, double min, double max,
                   const std::string& help) {
  std::ostringstream shown;
  shown << fallback;
  describe(flag, env, shown.str(), help);
  std::string value, where;
  if (!raw(flag, env, &value, &where)) return fallback;
  char* end = nullptr;
  errno = 0;
  double parsed = std::strtod(value.c_str(), &end);
  if (errno || end == value.c_str() || *end != '\0' || std::isnan(parsed)) {
    fail(where + "=" + quoted(value) + ": not a number");
  }
  if (parsed < min || parsed > max) {
    std::ostringstream range;
    range << where << "=" << value << ": must be in [" << min << ", " << max << "]";
    fail(range.str());
  }
  return parsed;
}

std::string Flags::text(const std::string& flag, const char* env, const std::string& fallback,
                        const std::string& help) {
  describe(flag, env, fallback.empty() ? "none" : fallback, help);
  std::string value, where;
  return raw(flag, env, &value, &where) ? value : fallback;
}

void Flags::done() {
  if (help_) {
    std::cout << "usage: " << prog_ << " [--flag VALUE ...]\n"
              << "Each flag falls back to its environment variable, then to its default.\n"
              << usage_;
    std::exit(0);
  }
  for (const auto& [name, value] : given_) {
    bool known = false;
    for (const auto& asked : asked_) known = known || asked == name;
    if (!known) fail("unknown flag " + name);
  }
}

ServerOptions ServerOptions::from_flags(Flags& flags) {
  ServerOptions o;
  o.host = flags.text("--host", "SCATTER_HOST", o.host, "address to listen on");
  o.port = static_cast<int>(flags.integer("--port", "SCATTER_PORT", 0, 0, 65535, "port; 0 picks a free one"));
  o.max_concurrency = static_cast<int>(flags.integer("--max-concurrency", "SCATTER_MAX_CONCURRENCY",
                                                     o.max_concurrency, 1, 100000,
                                                     "calls at once before RESOURCE_EXHAUSTED"));
  o.grace_seconds = flags.real("--grace-seconds", "SCATTER_GRACE_SECONDS", o.grace_seconds, 0, 86400,
                               "time in-flight calls get to finish on SIGTERM");
  o.drain_delay_seconds = flags.real("--drain-delay-seconds", "SCATTER_DRAIN_DELAY_SECONDS",
                                     o.drain_delay_seconds, 0, 3600,
                                     "NOT_SERVING for this long on SIGTERM before refusing connections");
  o.tls_cert = flags.text("--tls-cert", "SCATTER_TLS_CERT", "", "certificate to serve TLS with (PEM)");
  o.tls_key = flags.text("--tls-key", "SCATTER_TLS_KEY", "", "its private key (PEM)");
  o.tls_client_ca =
      flags.text("--tls-client-ca", "SCATTER_TLS_CLIENT_CA", "", "require client certificates of this CA");
  if (o.tls_cert.empty() != o.tls_key.empty()) flags.fail("--tls-cert and --tls-key go together");
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) flags.fail("--tls-client-ca needs --tls-cert and --tls-key");
  return o;
}

// -- payloads ---------------------------------------------------------------

std::string type_name(const google::protobuf::Any& any) {
  const std::string& url = any.type_url();
  auto slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

grpc::Status unpack(const google::protobuf::Any& any, google::protobuf::Message* out, const std::string& what) {
  const std::string& expected = out->GetDescriptor()->full_name();
  if (any.type_url().empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "the " + what + " is missing, expected '" + expected + "'"};
  }
  std::string actual = type_name(any);
  if (actual != expected) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "the " + what + " has type " + quoted(actual) + ", expected '" + expected + "'"};
  }
  if (!out->ParseFromString(any.value())) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "the " + what + " of type '" + expected + "' does not decode (its bytes are not a " + expected + ")"};
  }
  return grpc::Status::OK;
}

// -- concurrency, cancellation, deadlines -------------------------------------

bool Slots::try_acquire() {
  if (used_.fetch_add(1) < limit_) return true;
  used_.fetch_sub(1);
  return false;
}

Stop stopped(grpc::ServerContextBase* context) {
  if (std::chrono::system_clock::now() >= context->deadline()) return Stop::kDeadline;
  if (context->IsCancelled()) return Stop::kCancelled;  // also true once gRPC's deadline timer fired
  return Stop::kNone;
}

Stop work_for(grpc::ServerContextBase* context, std::chrono::nanoseconds duration) {
  const auto end = std::chrono::steady_clock::now() + duration;
  for (;;) {
    Stop why = stopped(context);
    if (why != Stop::kNone) return why;
    auto now = std::chrono::steady_clock::now();
    if (now >= end) return Stop::kNone;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(end - now, kWorkStep));
  }
}

grpc::Status stopped_status(Stop why) {
  if (why == Stop::kDeadline) return {grpc::StatusCode::DEADLINE_EXCEEDED, "stopped: the call's deadline passed"};
  return {grpc::StatusCode::CANCELLED, "stopped: the call was cancelled"};
}

double remaining_ms(grpc::ServerContextBase* context) {
  auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return 0.0;
  std::chrono::duration<double, std::milli> left = deadline - std::chrono::system_clock::now();
  return std::max(0.0, left.count());
}

// -- lifecycle ----------------------------------------------------------------

Process::Process(std::string role, std::string service_name, ServerOptions options)
    : role_(std::move(role)), service_name_(std::move(service_name)), options_(std::move(options)) {}

void Process::set_serving(bool serving) {
  ready_.store(serving);
  // grpc++'s default health service knows only "" until a name is set: set ours by hand.
  health_->SetServingStatus(service_name_, serving);
  health_->SetServingStatus(serving);  // "" and every name set so far
}

void Process::drain(grpc::Server* server, const char* signal_name) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_ = true;
    set_serving(false);  // calls that still arrive get UNAVAILABLE: the root asks another replica
  }
  std::cerr << "scatter: " << role_ << " draining on " << signal_name << " (grace " << options_.grace_seconds
            << " s)" << std::endl;
  // Let the root see NOT_SERVING and stop sending before the listener goes away.
  std::this_thread::sleep_for(std::chrono::duration<double>(options_.drain_delay_seconds));
  // Waits for in-flight calls, cancelling those still running at the deadline (they stop at once).
  auto grace = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(options_.grace_seconds));
  server->Shutdown(std::chrono::system_clock::now() + grace);
}

int Process::run(grpc::Service& service, const std::function<void()>& load) {
  // SIGTERM and SIGINT go to one thread that waits for them (sigwait), not to a handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();  // grpc.reflection.v1alpha
  const std::string host = options_.host.find(':') != std::string::npos ? "[" + options_.host + "]" : options_.host;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(host + ":" + std::to_string(options_.port), credentials(options_), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "scatter: " << role_ << " cannot listen on " << host << ":" << options_.port
              << " (in use, or not an address of this machine?)" << std::endl;
    return 1;
  }
  // Listening from here: report NOT_SERVING until loaded, so probes get an answer, not a refused connection.
  health_ = server->GetHealthCheckService();
  set_serving(false);
  std::cerr << "scatter: " << role_ << " listening on " << host << ":" << port << std::endl;

  std::thread([this, signals, raw = server.get()] {
    int received = 0;
    sigwait(&signals, &received);
    drain(raw, received == SIGTERM ? "SIGTERM" : "SIGINT");
  }).detach();

  try {
    load();
  } catch (const std::exception& error) {
    std::cerr << "scatter: " << role_ << " failed to load: " << error.what() << std::endl;
    return 1;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!draining_) set_serving(true);
  }
  server->Wait();
  std::cerr << "scatter: " << role_ << " stopped" << std::endl;
  return 0;
}

}  // namespace scatter

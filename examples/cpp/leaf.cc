// Probe leaf in C++: the same behaviour as examples/probe/leaf.py, on grpc++.
//
//   SCATTER_SHARD_INDEX=0 SCATTER_SHARD_COUNT=2 SCATTER_PORT=50061 build/probe_leaf
//
// Shard i waits shard_delays[i] (else delay) and answers
// value = i + 1 + request.value; it fails with INTERNAL when i is in
// fail_shards. The wait is work in small steps that stops as soon as the
// call is cancelled or its deadline passes. The runtime (`scatter up`) sets
// SCATTER_HOST, SCATTER_PORT, SCATTER_SHARD_INDEX, SCATTER_SHARD_COUNT and
// SCATTER_REPLICA_ID; `--help` lists the flags.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "probe/v1/probe.pb.h"
#include "scatter_gather/v1/leaf.grpc.pb.h"
#include "serving.h"

namespace {

using probe::v1::ProbePartial;
using probe::v1::ProbeRequest;
using scatter_gather::v1::ExecuteRequest;
using scatter_gather::v1::ExecuteResponse;

// Longer than any deadline: a request asking for more waits this long (until its deadline stops it).
constexpr double kMaxDelaySeconds = 365.0 * 86400;

double seconds(const google::protobuf::Duration& d) { return static_cast<double>(d.seconds()) + d.nanos() / 1e9; }

struct ProbeFlags {
  double base_latency_ms = 0;      // added to every call's delay
  double stall_probability = 0;    // chance that a call stalls
  double stall_ms = 100;           // extra delay of a stalled call
  std::int64_t seed = 0;           // seed of the stall draws
  double start_delay_ms = 0;       // startup time before SERVING (stands in for loading an index)
};

// Execute's body arrives as bytes (see scatter::answer_on_thread); the handler is Handle below.
class ProbeLeaf final
    : public scatter_gather::v1::Leaf::WithRawCallbackMethod_Execute<scatter_gather::v1::Leaf::Service> {
 public:
  ProbeLeaf(const scatter::Process& process, std::uint32_t shard_index, std::uint32_t shard_count,
            ProbeFlags flags, std::string replica)
      : process_(process),
        shard_index_(shard_index),
        shard_count_(shard_count),
        flags_(flags),
        replica_(std::move(replica)),
        slots_(process.options().max_concurrency),
        // One stream of draws per shard and replica, so replicas stall independently.
        rng_(std::hash<std::string>{}(std::to_string(flags.seed) + ":" + std::to_string(shard_index) + ":" +
                                      replica_)) {}

  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* context, const grpc::ByteBuffer* body,
                                    grpc::ByteBuffer* out) override {
    return scatter::answer_on_thread<ExecuteRequest, ExecuteResponse>(
        context, body, out, [this](grpc::ServerContextBase* c, const ExecuteRequest& call, ExecuteResponse* answer) {
          return Handle(c, call, answer);
        });
  }

 private:
  grpc::Status Handle(grpc::ServerContextBase* context, const ExecuteRequest& call, ExecuteResponse* answer) {
    if (!process_.ready()) {
      return {grpc::StatusCode::UNAVAILABLE, "leaf is starting or draining; try another replica"};
    }
    // A wrong shard means a misconfigured root: fail loudly rather than answer with another shard's data.
    if (call.shard_index() != shard_index_ || (call.shard_count() != 0 && call.shard_count() != shard_count_)) {
      std::string asked = "shard " + std::to_string(call.shard_index());
      if (call.shard_count() != 0) asked += " of " + std::to_string(call.shard_count());
      return {grpc::StatusCode::FAILED_PRECONDITION, "this leaf serves shard " + std::to_string(shard_index_) +
                                                         " of " + std::to_string(shard_count_) +
                                                         "; the request is for " + asked};
    }
    ProbeRequest request;
    if (grpc::Status bad = scatter::unpack(call.payload(), &request, "payload"); !bad.ok()) return bad;
    scatter::Slot slot(slots_);
    if (!slot.held()) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "leaf is at its concurrency limit (" + std::to_string(slots_.limit()) + " calls in flight)"};
    }

    const double remaining = scatter::remaining_ms(context);
    if (scatter::Stop why = scatter::work_for(context, delay_of(request)); why != scatter::Stop::kNone) {
      return scatter::stopped_status(why);  // cancelled, not finished, when the root gives up on this call
    }
    const auto& fail = request.fail_shards();
    if (std::find(fail.begin(), fail.end(), shard_index_) != fail.end()) {
      return {grpc::StatusCode::INTERNAL, "shard " + std::to_string(shard_index_) + " was asked to fail"};
    }
    const std::uint64_t add = std::uint64_t{shard_index_} + 1;
    if (request.value() > std::numeric_limits<std::uint64_t>::max() - add) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "value " + std::to_string(request.value()) + " is too large: shard " + std::to_string(shard_index_) +
                  " answers value + " + std::to_string(add) + ", over the uint64 maximum"};
    }
    if (!request.marker_dir().empty()) {  // test hook: evidence that this call ran to the end
      std::ofstream(request.marker_dir() + "/" + std::to_string(request.value()) + "-" +
                    std::to_string(shard_index_) + "-" + replica_ + ".done");
    }
    ProbePartial partial;
    partial.set_shard_index(shard_index_);
    partial.set_value(request.value() + add);
    partial.set_replica(replica_);
    partial.set_remaining_ms(remaining);
    answer->mutable_payload()->PackFrom(partial);
    return grpc::Status::OK;
  }

  std::chrono::nanoseconds delay_of(const ProbeRequest& request) {
    double total = seconds(request.delay());
    auto own = request.shard_delays().find(shard_index_);
    if (own != request.shard_delays().end() && seconds(own->second) != 0) total = seconds(own->second);
    total += flags_.base_latency_ms / 1000;
    auto slow = request.replica_delays().find(replica_);
    if (slow != request.replica_delays().end()) total += seconds(slow->second);
    {
      std::lock_guard<std::mutex> lock(rng_mutex_);
      if (draw_(rng_) < flags_.stall_probability) total += flags_.stall_ms / 1000;
      if (request.stall_probability() > 0 && draw_(rng_) < request.stall_probability()) {
        total += seconds(request.stall());
      }
    }
    total = std::clamp(total, 0.0, kMaxDelaySeconds);
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(total));
  }

  const scatter::Process& process_;
  const std::uint32_t shard_index_;
  const std::uint32_t shard_count_;
  const ProbeFlags flags_;
  const std::string replica_;
  scatter::Slots slots_;
  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> draw_{0.0, 1.0};
};

}  // namespace

int main(int argc, char** argv) {
  scatter::Flags flags(argc, argv);
  scatter::ServerOptions options = scatter::ServerOptions::from_flags(flags);
  auto shard_count = flags.integer("--shard-count", "SCATTER_SHARD_COUNT", 1, 1, 1 << 20, "number of shards");
  auto shard_index = flags.integer("--shard-index", "SCATTER_SHARD_INDEX", 0, 0, 1 << 20, "the shard served");
  ProbeFlags probe;
  probe.base_latency_ms = flags.real("--base-latency-ms", nullptr, 0, 0, 3.6e6, "added to every call's delay");
  probe.stall_probability = flags.real("--stall-probability", nullptr, 0, 0, 1, "chance that a call stalls");
  probe.stall_ms = flags.real("--stall-ms", nullptr, 100, 0, 3.6e6, "extra delay of a stalled call");
  probe.seed = flags.integer("--seed", nullptr, 0, std::numeric_limits<std::int64_t>::min(),
                             std::numeric_limits<std::int64_t>::max(), "seed of the stall draws");
  probe.start_delay_ms = flags.real("--start-delay-ms", nullptr, 0, 0, 3.6e6, "startup time before SERVING");
  flags.done();
  if (shard_index >= shard_count) {
    flags.fail("shard index " + std::to_string(shard_index) + " is out of range for shard count " +
               std::to_string(shard_count) +
               " (--shard-index/SCATTER_SHARD_INDEX, --shard-count/SCATTER_SHARD_COUNT)");
  }
  const char* replica = std::getenv("SCATTER_REPLICA_ID");

  scatter::Process process("leaf", "scatter_gather.v1.Leaf", options);
  ProbeLeaf leaf(process, static_cast<std::uint32_t>(shard_index), static_cast<std::uint32_t>(shard_count), probe,
                 replica && *replica ? replica : std::to_string(getpid()));
  return process.run(leaf, [&] {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(probe.start_delay_ms));
    std::cerr << "scatter: leaf shard " << shard_index << "/" << shard_count << " ready" << std::endl;
  });
}

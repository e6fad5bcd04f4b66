// Probe merge in C++: the same answer as examples/probe/merge.py, on grpc++.
//
//   SCATTER_PORT=50060 build/probe_merge
//
// Sums ProbePartial.value over the shards that answered (failed shards carry
// no payload and are skipped), lists their indices ascending and keeps the
// largest remaining_ms. A sum over the uint64 maximum is the client's to fix
// (INVALID_ARGUMENT), not a crash (INTERNAL). `--help` lists the flags.
#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "probe/v1/probe.pb.h"
#include "scatter_gather/v1/merge.grpc.pb.h"
#include "serving.h"

namespace {

using probe::v1::ProbePartial;
using probe::v1::ProbeRequest;
using probe::v1::ProbeResponse;
using scatter_gather::v1::MergeRequest;
using scatter_gather::v1::MergeResponse;

// Merge's body arrives as bytes (see scatter::answer_on_thread); the handler is Handle below.
class ProbeMerge final
    : public scatter_gather::v1::Merge::WithRawCallbackMethod_Merge<scatter_gather::v1::Merge::Service> {
 public:
  explicit ProbeMerge(const scatter::Process& process)
      : process_(process), slots_(process.options().max_concurrency) {}

  grpc::ServerUnaryReactor* Merge(grpc::CallbackServerContext* context, const grpc::ByteBuffer* body,
                                  grpc::ByteBuffer* out) override {
    return scatter::answer_on_thread<MergeRequest, MergeResponse>(
        context, body, out, [this](grpc::ServerContextBase* c, const MergeRequest& call, MergeResponse* answer) {
          return Handle(c, call, answer);
        });
  }

 private:
  grpc::Status Handle(grpc::ServerContextBase* context, const MergeRequest& call, MergeResponse* answer) {
    if (!process_.ready()) {
      return {grpc::StatusCode::UNAVAILABLE, "merge is starting or draining"};
    }
    ProbeRequest request;
    if (grpc::Status bad = scatter::unpack(call.payload(), &request, "payload"); !bad.ok()) return bad;
    scatter::Slot slot(slots_);
    if (!slot.held()) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "merge is at its concurrency limit (" + std::to_string(slots_.limit()) + " calls in flight)"};
    }

    ProbeResponse merged;
    std::vector<std::uint32_t> answered;
    std::uint64_t sum = 0;
    for (const auto& result : call.results()) {
      // A merge of thousands of shards checks between them; a deadline that passed ends the work.
      if (scatter::Stop why = scatter::stopped(context); why != scatter::Stop::kNone) {
        return scatter::stopped_status(why);
      }
      if (result.report().status() != scatter_gather::v1::SHARD_STATUS_OK) continue;  // skipped, not fatal
      const std::uint32_t shard = result.report().shard_index();
      ProbePartial partial;
      if (grpc::Status bad = scatter::unpack(result.payload(), &partial, "payload of shard " + std::to_string(shard));
          !bad.ok()) {
        return bad;
      }
      if (partial.value() > std::numeric_limits<std::uint64_t>::max() - sum) {
        return {grpc::StatusCode::INVALID_ARGUMENT,
                "value " + std::to_string(request.value()) +
                    " is too large: the sum over the shards is over the uint64 maximum"};
      }
      sum += partial.value();
      answered.push_back(shard);
      merged.set_max_remaining_ms(std::max(merged.max_remaining_ms(), partial.remaining_ms()));
    }
    std::sort(answered.begin(), answered.end());
    merged.set_sum(sum);
    for (std::uint32_t shard : answered) merged.add_shard_indices(shard);
    // No shard answered, or no results at all: an empty ProbeResponse, still with its type URL.
    answer->mutable_payload()->PackFrom(merged);
    return grpc::Status::OK;
  }

  const scatter::Process& process_;
  scatter::Slots slots_;
};

}  // namespace

int main(int argc, char** argv) {
  scatter::Flags flags(argc, argv);
  scatter::ServerOptions options = scatter::ServerOptions::from_flags(flags);
  flags.done();
  scatter::Process process("merge", "scatter_gather.v1.Merge", options);
  ProbeMerge merge(process);
  return process.run(merge, [] {});
}

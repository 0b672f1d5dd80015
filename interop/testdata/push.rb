# Ruby -> Go: pushes jobs the ways a Rails app does; the Go server runs them.
require_relative "common"

class InteropRubyJob
  include Sidekiq::Worker
  sidekiq_options queue: "interop"

  def perform(*args)
    raise "runs in Go"
  end
end

out = {}
out["push"] = Sidekiq::Client.push(
  "class" => "Interop::PushJob", "queue" => "interop",
  "args" => [{"名前" => "太郎", "数" => 1, "nested" => {"ok" => true}}, 42, 3.25, nil, true, false, "文字列"]
)
out["async"] = InteropRubyJob.perform_async("async", 1)
out["in"] = InteropRubyJob.perform_in(1, "later", 2)
out["bulk"] = Sidekiq::Client.push_bulk(
  "class" => "Interop::BulkJob", "queue" => "interop", "args" => [[1], [2, "two"], [{"k" => "v"}]]
)

if SIDEKIQ7
  require "active_job"
  ActiveJob::Base.queue_adapter = :sidekiq
  ActiveJob::Base.logger = Logger.new(IO::NULL)

  class InteropAjJob < ActiveJob::Base
    queue_as :interop

    def perform(name, opts, at, sym, count: 0, flag: false)
      raise "runs in Go"
    end
  end

  args = ["名前", {a: 1, "b" => [1, 2]}, Time.utc(2024, 1, 2, 3, 4, 5, 123456), :sym]
  now = InteropAjJob.perform_later(*args, count: 3, flag: true)
  later = InteropAjJob.set(wait: 1).perform_later(*args, count: 4, flag: false)
  out["aj_now"] = now.provider_job_id
  out["aj_later"] = later.provider_job_id
  out["aj_job_ids"] = [now.job_id, later.job_id]
end

emit(out)

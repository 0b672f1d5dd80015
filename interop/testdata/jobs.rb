# Jobs for a real Ruby `sidekiq` server (go_to_ruby_test.go): each writes
# what it received to the Redis list "interop:results" as JSON.
require_relative "common"

class InteropEchoJob
  include Sidekiq::Worker

  def perform(*args)
    rpush("interop:results", {"jid" => jid, "class" => self.class.name, "args" => args})
  end
end

begin
  require "active_job"
rescue LoadError
  # 6.4.1 on the host has no Rails; only the 7.3.2 chroot has ActiveJob.
end

if defined?(ActiveJob)
  ActiveJob::Base.queue_adapter = :sidekiq
  ActiveJob::Base.logger = Logger.new(IO::NULL)

  class InteropAjEchoJob < ActiveJob::Base
    def perform(*args, **kwargs)
      rpush("interop:results", {
        "jid" => provider_job_id, "job_id" => job_id, "class" => self.class.name,
        "args" => args, "kwargs" => kwargs, "queue" => queue_name,
        "arg_classes" => args.map { |a| a.class.name }
      })
    end
  end
end

# The Rails app's token-queue jobs for a real Ruby `sidekiq` server: each
# row job writes one file under its path argument and records what it got
# in the Redis list "rails:rows"; the finalizer records its arguments in
# "rails:finalize".
require "fileutils"
require_relative "rails_common"

module Report
  class ProcessCsvRowJob
    include Sidekiq::Job
    sidekiq_options retry: 3

    def perform(row_hash, type, report_id, path, token)
      FileUtils.mkdir_p(path)
      File.write(File.join(path, "#{row_hash.values.first}.txt"),
        row_hash.map { |k, v| "#{k}: #{v}" }.join("\n"))
      rpush("rails:rows", {"jid" => jid, "args" => [row_hash, type, report_id, path, token],
        "keys" => row_hash.keys, "classes" => [row_hash, type, report_id, path, token].map { |a| a.class.name }})
    end
  end

  class FinalizeReportJob
    include Sidekiq::Job
    sidekiq_options retry: 3

    def perform(*args)
      rpush("rails:finalize", {"jid" => jid, "args" => args})
    end
  end
end

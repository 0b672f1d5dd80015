# Enqueues SplitCsvJob exactly as the Rails controller does:
#   SplitCsvJob.perform_later(csv_file.read, csv_type, report.id)
# The Go report worker runs it.
require_relative "rails_common"

class SplitCsvJob < ActiveJob::Base
  queue_as :report

  def perform(csv_string, type, report_id)
    raise "runs in Go"
  end
end

csv = ENV.fetch("CSV_TEXT").dup.force_encoding(Encoding::UTF_8)
job = SplitCsvJob.perform_later(csv, ENV.fetch("REPORT_TYPE"), Integer(ENV.fetch("REPORT_ID")))
$stdout.puts "RAILS_RESULT " + JSON.generate({"jid" => job.provider_job_id, "job_id" => job.job_id})

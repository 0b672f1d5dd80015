# One step of the Rails app, for a test to run with `sidekiq-peers ruby 8`
# (settings as in app.rb):
#   split FILE TYPE REPORT_ID|new       SplitCsvJob.perform_now, as a Ruby report worker runs it (new: the
#                                       controller's ClientReport created first); emits the token and report id
#   enqueue_split FILE TYPE REPORT_ID   SplitCsvJob.perform_later, as the controller enqueues it
#   perform_later CLASS [ARG...]        an ActiveJob class of the app enqueued with perform_later
require_relative "app"

case ARGV[0]
when "split"
  id = ARGV[3] == "new" ? ClientReport.create!(report_type: :xlsx, status: :pending).id : Integer(ARGV[3])
  SplitCsvJob.perform_now(File.read(ARGV[1]), ARGV[2], id)
  emit("token" => ClientReport.find(id).token, "report_id" => id)
when "enqueue_split"
  job = SplitCsvJob.perform_later(File.read(ARGV[1]), ARGV[2], Integer(ARGV[3]))
  emit("jid" => job.provider_job_id)
when "perform_later"
  job = Object.const_get(ARGV[1]).perform_later(*ARGV[2..])
  emit("jid" => job.provider_job_id, "queue" => job.queue_name)
else
  abort "usage: cmd.rb split|enqueue_split|perform_later ..."
end

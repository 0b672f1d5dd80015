# Ruby's reading of CSV files as the Rails app's SplitCsvJob does it:
# CSV.parse(text, headers: true), then row.to_h. Prints, per file named in
# CSV_FILES (colon-separated), the rows as [[key, value-or-nil], ...] so key order and nil survive.
require "csv"
require "json"
out = ENV.fetch("CSV_FILES").split(":").map do |path|
  CSV.parse(File.read(path, encoding: "UTF-8"), headers: true).map { |row| row.to_h.to_a }
end
$stdout.puts "INTEROP_RESULT " + JSON.generate(out)

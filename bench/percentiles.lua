-- Appended to every wrk script of bench/compare.sh: wrk's --latency table stops at 99%, so the
-- harness reads p50, p99 and p99.9 from these lines instead (microseconds).
done = function(summary, latency, requests)
  for _, p in ipairs({50, 99, 99.9}) do
    io.write(string.format("PCTL %g %d\n", p, latency:percentile(p)))
  end
end

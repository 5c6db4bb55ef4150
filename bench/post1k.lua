-- The 1 KiB POST scenario of bench/compare.sh: the backend's /post answers with the body's length.
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"

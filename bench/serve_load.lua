-- wrk script of bench/serve_load.sh: every request is POST /v1/predict with the batch-1 body in
-- the file named by $NNR_PREDICT_BODY ({"input": [784 numbers]}).
local f = assert(io.open(assert(os.getenv("NNR_PREDICT_BODY"), "set NNR_PREDICT_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

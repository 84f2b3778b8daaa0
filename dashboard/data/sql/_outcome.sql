-- The span's outcome: biz.outcome when the adapter set it, else from the span status.
if(Outcome != '', Outcome, if(StatusCode = 'Error', {outcome_failed:String}, {outcome_ok:String}))

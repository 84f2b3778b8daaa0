-- Objects scope 'suspect': transactions with a failed span, or a failing verdict.
AND (CorrelationId IN (/*@suspects*/) OR has({verdict_suspects:Array(String)}, CorrelationId))

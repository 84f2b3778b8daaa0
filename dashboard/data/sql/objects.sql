-- Business objects: one row per transaction and canonical object type, with the
-- object's last outcome and id in CRM, billing and ERP side by side, and whether
-- the systems agree: every expected system ended ok, none failed, and they carry
-- the same amount. Objects none of whose expected systems has seen them (a CRM
-- account touched by a payment update) are left out.
SELECT
    CorrelationId AS correlation_id,
    object_type,
    if(billing_id != '', billing_id, if(erp_id != '', erp_id, crm_id)) AS object_id,
    entity,
    first_seen,
    last_seen,
    crm,
    billing,
    erp,
    crm_id,
    billing_id,
    erp_id,
    arrayStringConcat(arrayMap(a -> toString(a), amounts), ' / ') AS amount,
    currency,
    expected,
    arrayAll(s -> multiIf(s = {sys_crm:String}, crm, s = {sys_billing:String}, billing,
                          s = {sys_erp:String}, erp, '') IN {ok_outcomes:Array(String)}, expected)
        AND NOT hasAny([crm, billing, erp], {failed_outcomes:Array(String)})
        AND length(amounts) <= 1 AS consistent,
    hasAny([crm, billing, erp], {failed_outcomes:Array(String)}) AS failed
FROM (
    SELECT
        CorrelationId,
        transform(ObjectType, {type_alias_from:Array(String)}, {type_alias_to:Array(String)}, ObjectType)
            AS object_type,
        argMaxIf(/*@outcome*/, Timestamp, System = {sys_crm:String}) AS crm,
        argMaxIf(/*@outcome*/, Timestamp, System = {sys_billing:String}) AS billing,
        argMaxIf(/*@outcome*/, Timestamp, System = {sys_erp:String}) AS erp,
        argMaxIf(ObjectId, Timestamp, System = {sys_crm:String} AND ObjectId != '') AS crm_id,
        argMaxIf(ObjectId, Timestamp, System = {sys_billing:String} AND ObjectId != '') AS billing_id,
        argMaxIf(ObjectId, Timestamp, System = {sys_erp:String} AND ObjectId != '') AS erp_id,
        max(LegalEntity) AS entity,
        min(Timestamp) AS first_seen,
        max(EndTimestamp) AS last_seen,
        arraySort(groupUniqArrayIf(Amount, Amount IS NOT NULL)) AS amounts,
        anyIf(Currency, Currency != '') AS currency,
        arrayElement({expected_systems:Array(Array(String))},
                     indexOf({object_types:Array(String)}, object_type)) AS expected
    FROM revtrace_spans
    WHERE /*@window*/
      AND ObjectType IN {raw_object_types:Array(String)}
      /*:scope*/
    GROUP BY CorrelationId, object_type
    HAVING ({entity:String} = '' OR entity = {entity:String})
       AND ({object_type:String} = '' OR object_type = {object_type:String})
)
WHERE first_seen <= {seen_before:DateTime64(9)}
  AND arrayExists(s -> multiIf(s = {sys_crm:String}, crm, s = {sys_billing:String}, billing,
                               s = {sys_erp:String}, erp, '') != '', expected)
  AND multiIf({status:String} = 'consistent', consistent,
              {status:String} = 'inconsistent', NOT consistent,
              {status:String} = 'failed', failed,
              1)
ORDER BY first_seen DESC
LIMIT {limit:UInt32}

SELECT *, "Caller" AS "AccountCustomEntity", "CallerIpAddress" AS "IPCustomEntity", "HTTPRequest" AS "URLCustomEntity", "ResourceId" AS "HostCustomEntity" FROM (
  SELECT a."TimeGenerated", a."OperationName", a."OperationNameValue", a."Level", a."ActivityStatus", a."ActivityStatusValue",
         a."ActivitySubstatus", a."ActivitySubstatusValue",
         json_text(json_get(parse_json(json_text(json_get(a."Properties", 'requestbody'))), 'Properties', 'Caller')) AS "Caller",
         a."CallerIpAddress", a."Category", a."CategoryValue", a."CorrelationId", a."ResourceGroup", a."ResourceProvider",
         a."ResourceProviderValue", a."Resource", a."ResourceId", a."SubscriptionId", a."TenantId", a."Properties", a."Authorization",
         a."Claims", a."HTTPRequest", a."EventSubmissionTimestamp", a."EventDataId", a."Hierarchy", a."OperationId", a."ActivityLevel", a."Properties_d",
         a."Authorization_d", a."Claims_d", a."_ResourceId", a."SourceSystem", a."Type", a."_TimeReceived", a."_LedgerIndex", a."_BilledSize", a."_IsBillable", a."_SubscriptionId",
         json_text(json_get(parse_json(json_text(json_get(a."Properties", 'requestbody'))), 'Properties', 'RoleDefinitionId')) AS "RoleDef"
  FROM "AzureActivity" a
  WHERE a."OperationName" = 'Create role assignment'
) x
WHERE "RoleDef" ILIKE '%8e3af657-a8ff-443c-a75c-2fe8c4bcb635%' OR "RoleDef" ILIKE '%b24988ac-6180-42a0-ab88-20f7382dd24c%'

SELECT "log_s" FROM "AzureDiagnostics" WHERE "Category" = 'kube-apiserver' AND "log_s" ILIKE '%pods/nginx%'

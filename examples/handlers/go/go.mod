module example.com/intent-fleet/handler

go 1.22

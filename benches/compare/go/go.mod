module compare/notify

go 1.19

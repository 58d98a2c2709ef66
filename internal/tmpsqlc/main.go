package main
import ("os"; sqlc "github.com/sqlc-dev/sqlc/pkg/cli")
func main(){ os.Exit(sqlc.Run(os.Args[1:])) }

// Command weir is the Weir API gateway: weir run | validate | plugin … | version (cli.go lists
// them with their flags).
package main

import "os"

func main() { os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr)) }

// Command etcd is the upstream etcd server, unchanged: etcdmain.Main as in etcd's own main package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

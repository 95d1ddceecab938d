// podlab-libcni drives a CNI network list through the real libcni, as containerd and
// CRI-O do, so podlab's tests can check a plugin against the reference runtime library.
//
//	podlab-libcni ADD|CHECK|DEL -conflist FILE -netns PATH -container-id ID
//	              [-ifname eth0] [-plugin-dir DIR]... [-cache-dir DIR] [-args K=V;K=V]
//
// ADD prints the result as JSON; every command exits non-zero with the error on stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

type dirs []string

func (d *dirs) String() string     { return strings.Join(*d, ":") }
func (d *dirs) Set(v string) error { *d = append(*d, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: podlab-libcni ADD|CHECK|DEL [flags]")
		os.Exit(2)
	}
	command := os.Args[1]
	fs := flag.NewFlagSet(command, flag.ExitOnError)
	conflist := fs.String("conflist", "", "network list file")
	netns := fs.String("netns", "", "network namespace path")
	containerID := fs.String("container-id", "", "container id")
	ifname := fs.String("ifname", "eth0", "interface name in the container")
	cacheDir := fs.String("cache-dir", "", "libcni result cache directory")
	cniArgs := fs.String("args", "", "CNI_ARGS, K=V;K=V")
	var pluginDirs dirs
	fs.Var(&pluginDirs, "plugin-dir", "plugin directory (repeatable)")
	_ = fs.Parse(os.Args[2:])

	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fail(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(pluginDirs, *cacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: *containerID, NetNS: *netns, IfName: *ifname}
	for _, kv := range strings.Split(*cniArgs, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	ctx := context.Background()
	switch command {
	case "ADD":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		out, err := json.Marshal(result)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(out))
	case "CHECK":
		err = cni.CheckNetworkList(ctx, list, rt)
	case "DEL":
		err = cni.DelNetworkList(ctx, list, rt)
	default:
		err = fmt.Errorf("unknown command %q", command)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

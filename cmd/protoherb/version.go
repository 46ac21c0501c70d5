package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"protoherb/torch"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the protoherb version, the linked libtorch and its distributed backends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version
			if info, ok := debug.ReadBuildInfo(); ok && v == "dev" {
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" && len(s.Value) >= 12 {
						v = "dev-" + s.Value[:12]
					}
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "protoherb %s\n", v)
			fmt.Fprintf(out, "libtorch %s, cuda available: %v, threads: %d\n",
				torch.Version(), torch.CUDAAvailable(), torch.NumThreads())
			fmt.Fprintf(out, "distributed backends (c10d): %s\n", strings.Join(torch.DistBackends(), ", "))
			return nil
		},
	}
}

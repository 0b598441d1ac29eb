package testkube

import (
	"strings"
	"testing"
)

func TestSplitYAML(t *testing.T) {
	stream := "# lead\na: 1\n--- # sep\nb: 2\n---\n---x: 3\n\n---\n"
	docs, err := SplitYAML([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, string(d))
	}
	want := []string{"# lead\na: 1\n", "b: 2\n", "---x: 3\n\n", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("SplitYAML(%q) = %q, want %q", stream, got, want)
	}
}

func TestIdentify(t *testing.T) {
	obj, err := identify([]byte("# only a comment\n"))
	if err != nil || obj != nil {
		t.Fatalf("comment-only document: %v, %v; want nil, nil", obj, err)
	}
	obj, err = identify([]byte("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\n  namespace: ns\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Object{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "x", Namespace: "ns"}); *obj != want {
		t.Fatalf("identify = %+v, want %+v", *obj, want)
	}
	if _, err := identify([]byte("kind: DaemonSet\n")); err == nil {
		t.Fatal("a document without apiVersion and name is accepted")
	}
}

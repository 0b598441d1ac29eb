package sockdiag

import (
	"bytes"
	"testing"
)

// The reply encoders feed the collector fakes; they must produce what the
// kernel would, i.e. what the hand-built layouts in helpers_test.go produce,
// and what the decoders read back unchanged.

func TestInetSocketMarshalBinary(t *testing.T) {
	for _, tc := range inetCases() {
		if tc.wantErr != nil || tc.errSub != "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.want.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error: %v", err)
			}
			hand := inetMsg{
				family: tc.want.Family, state: tc.want.State,
				local: tc.want.Local, remote: tc.want.Remote, ifIndex: tc.want.IfIndex,
				rqueue: tc.want.RQueue, wqueue: tc.want.WQueue, uid: tc.want.UID, inode: tc.want.Inode,
				cookie: [2]uint32{uint32(tc.want.Cookie), uint32(tc.want.Cookie >> 32)},
			}.encode(nil)
			if len(b) < 72 || !bytes.Equal(b[:72], hand) {
				t.Errorf("header\n got % x\nwant % x", b[:min(len(b), 72)], hand)
			}
			wantLen := 72
			if tc.want.HasDrops {
				wantLen += 4 + 4*9 // one SKMEMINFO attribute up to SK_MEMINFO_DROPS
			}
			if len(b) != wantLen {
				t.Errorf("len = %d, want %d", len(b), wantLen)
			}
			got, err := ParseInetSocket(b)
			if err != nil {
				t.Fatalf("ParseInetSocket(MarshalBinary()) error: %v", err)
			}
			if got != tc.want {
				t.Errorf("round trip\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestUnixSocketMarshalBinary(t *testing.T) {
	for _, tc := range unixCases() {
		if tc.wantErr != nil || tc.errSub != "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.want.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error: %v", err)
			}
			var a []byte
			if tc.want.Name != nil {
				a = append(a, attrs(nameAttr(tc.want.Name))...)
			}
			if tc.want.HasQueue {
				a = append(a, attrs(rqlenAttr(tc.want.RQueue, tc.want.WQueue))...)
			}
			hand := unixMsg{family: FamilyUnix, typ: tc.want.Type, state: tc.want.State, inode: tc.want.Inode}.encode(a)
			if !bytes.Equal(b, hand) {
				t.Errorf("MarshalBinary()\n got % x\nwant % x", b, hand)
			}
			got, err := ParseUnixSocket(b)
			if err != nil {
				t.Fatalf("ParseUnixSocket(MarshalBinary()) error: %v", err)
			}
			if !unixEqual(got, tc.want) {
				t.Errorf("round trip\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

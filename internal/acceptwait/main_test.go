package acceptwait_test

import (
	"os"
	"testing"

	"github.com/listenq/listenq_exporter/internal/testns"
)

func TestMain(m *testing.M) { os.Exit(testns.Main(m)) }

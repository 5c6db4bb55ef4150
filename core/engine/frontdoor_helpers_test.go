package engine

import (
	"encoding/base64"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

var (
	aliceHashOnce sync.Once
	aliceHashV    string
)

// aliceHash is a bcrypt hash (minimum cost, for speed) of "alice-pass".
func aliceHash(t *testing.T) string {
	aliceHashOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte("alice-pass"), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		aliceHashV = string(h)
	})
	return aliceHashV
}

func basicValue(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

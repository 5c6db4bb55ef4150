// Package all registers every built-in filter. Importing it for its side effects (the engine and
// the CLI do) makes each filter's name available to configs; a filter added under filters/ is
// added here too, in alphabetical order.
package all

import (
	_ "github.com/weir-gateway/weir/filters/acl"       // "acl"
	_ "github.com/weir-gateway/weir/filters/apikey"    // "apikey"
	_ "github.com/weir-gateway/weir/filters/basicauth" // "basicauth"
	_ "github.com/weir-gateway/weir/filters/breaker"   // "breaker"
	_ "github.com/weir-gateway/weir/filters/cache"     // "cache"
	_ "github.com/weir-gateway/weir/filters/compress"  // "compress"
	_ "github.com/weir-gateway/weir/filters/cors"      // "cors"
	_ "github.com/weir-gateway/weir/filters/extauth"   // "extauth"
	_ "github.com/weir-gateway/weir/filters/headers"   // "headers"
	_ "github.com/weir-gateway/weir/filters/ipfilter"  // "ipfilter"
	_ "github.com/weir-gateway/weir/filters/jwt"       // "jwt"
	_ "github.com/weir-gateway/weir/filters/mirror"    // "mirror"
	_ "github.com/weir-gateway/weir/filters/ratelimit" // "ratelimit"
	_ "github.com/weir-gateway/weir/filters/redirect"  // "redirect"
	_ "github.com/weir-gateway/weir/filters/requestid" // "request-id"
	_ "github.com/weir-gateway/weir/filters/respond"   // "respond"
	_ "github.com/weir-gateway/weir/filters/rewrite"   // "rewrite"
)

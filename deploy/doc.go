// Package deploy holds the AWS deployment files: ECS task definitions for
// the web server, the report worker and the token worker (ecs/), the web
// server's load balancer target group (elb/), and the IAM policies and
// trust policies of their roles (iam/). It has no code; its tests check the
// files against the code that uses them: the token task starts as ECS
// would start it from the launcher's RunTask request, the launcher's
// settings in the report worker's task are valid, and the roles allow
// exactly what the launcher and storage call.
package deploy

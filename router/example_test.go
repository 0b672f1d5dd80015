package router_test

import (
	"fmt"

	"github.com/pallarel/pallarel/router"
)

func ExampleQueueName() {
	fmt.Println(router.QueueName("0f8fad5b-d9cb-469f-a165-70867728950e"))
	// Output: report-a432dda8147b7660
}

func ExampleRouter_For() {
	r := router.Router{HexLen: 8}
	q, err := r.For("0f8fad5b-d9cb-469f-a165-70867728950e")
	fmt.Println(q, err, r.IsTokenQueue(q))
	_, err = r.For("../../etc/passwd")
	fmt.Println(err != nil)
	// Output:
	// report-a432dda8 <nil> true
	// true
}

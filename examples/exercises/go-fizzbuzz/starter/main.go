package main

import "fmt"

func main() {
	for i := 1; i <= 15; i++ {
		// Fix me: Fizz, Buzz and FizzBuzz.
		fmt.Println(i)
	}
}

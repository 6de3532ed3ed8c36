const input = require("fs").readFileSync(0, "utf8");
const numbers = input.split(" ").map(Number);
// Fix me: new lines separate numbers too, and the sum is not printed yet.
console.log(numbers.length);

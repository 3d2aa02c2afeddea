// A word trie of topic patterns: finds every pattern that matches a topic
// without looking at the patterns that cannot (RabbitMQ routes its topic
// exchange the same way).
//
// API:
//   At(pattern)     the entries stored under a pattern, its path created if new.
//   Find(pattern)   the same, or null; never creates.
//   Missing(pattern, &bytes)
//                   how many nodes At(pattern) would create, and their bytes:
//                   what an owner checks against its caps before calling At.
//   Prune(pattern)  removes the nodes of the pattern's path left with no
//                   entries and no children (call after emptying its entries);
//                   returns their bytes.
//   nodes(), bytes()
//                   what the trie holds: nodes besides the root, and their
//                   heap bytes as NodeBytes counts them (the owner charges
//                   them to memory; entries are the owner's to count).
//   Match(topic, visit)
//                   calls visit(const Entries&) once for every node whose
//                   pattern matches the topic.
// Patterns come from ParsePattern (runs of `#` collapsed, so that equivalent
// patterns share a node), topics from SplitTopic. Match walks the trie as a nondeterministic
// automaton: after each topic word it holds the set of nodes whose pattern prefix matches the words
// so far, each node at most once, so a match costs at most topic words x nodes
// in that set steps; it never backtracks. Not thread-safe: the owner locks, and
// may Match from several readers at once (Match changes nothing).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/core/topic_name.h"

namespace basin::core {

// What an unordered map or set of libstdc++ allocates for buckets at its
// first insert, and keeps: none while it is empty, then 13 (an array of
// pointers, plus the allocator's 16-byte header) that erasing back to empty
// does not free. Each trie node's word map pays it once, and so does each
// hash set of entries an owner keeps at a node (topic_router.cc).
inline constexpr uint64_t kFirstBucketsBytes = 13 * sizeof(void*) + 16;

template <typename Entries>
class TopicTrie {
 public:
  Entries& At(const TopicWords& pattern) {
    Node* n = &root_;
    for (std::string_view w : pattern) {
      std::unique_ptr<Node>* child = ChildSlot(n, w);
      if (*child == nullptr) {
        *child = std::make_unique<Node>();
        (*child)->is_hash = w == "#";
        ++nodes_;
        bytes_ += NodeBytes(w);
      }
      n = child->get();
    }
    return n->entries;
  }

  size_t Missing(const TopicWords& pattern, uint64_t* bytes) const {
    const Node* n = &root_;
    size_t depth = 0;
    for (; depth < pattern.size(); ++depth) {
      const Node* next = Child(n, pattern[depth]);
      if (next == nullptr) break;
      n = next;
    }
    for (size_t i = depth; i < pattern.size(); ++i) *bytes += NodeBytes(pattern[i]);
    return pattern.size() - depth;
  }

  Entries* Find(const TopicWords& pattern) {
    Node* n = &root_;
    for (std::string_view w : pattern) {
      n = Child(n, w);
      if (n == nullptr) return nullptr;
    }
    return &n->entries;
  }

  uint64_t Prune(const TopicWords& pattern) {
    std::vector<Node*> path{&root_};
    for (std::string_view w : pattern) {
      Node* next = Child(path.back(), w);
      if (next == nullptr) return 0;
      path.push_back(next);
    }
    uint64_t freed = 0;
    for (size_t i = pattern.size(); i > 0; --i) {
      if (!path[i]->Empty()) break;
      Node* parent = path[i - 1];
      const std::string_view w = pattern[i - 1];
      freed += NodeBytes(w);
      if (w == "#") {
        parent->hash.reset();
      } else if (w == "*") {
        parent->star.reset();
      } else {
        parent->words.erase(parent->words.find(w));
      }
      --nodes_;
    }
    bytes_ -= freed;
    return freed;
  }

  template <typename Visit>
  void Match(const TopicWords& topic, Visit&& visit, size_t* steps = nullptr) const {
    std::vector<const Node*> live, next;
    Enter(live, &root_);
    size_t taken = 0;
    for (std::string_view word : topic) {
      next.clear();
      for (const Node* n : live) {
        ++taken;
        if (n->is_hash) next.push_back(n);  // `#` absorbs this word and may take more
        if (auto it = n->words.find(word); it != n->words.end()) Enter(next, it->second.get());
        if (n->star != nullptr) Enter(next, n->star.get());
      }
      // Only a `#` node can arrive twice (absorbing, and entered after its
      // parent matched): one copy is enough.
      std::sort(next.begin(), next.end());
      next.erase(std::unique(next.begin(), next.end()), next.end());
      live.swap(next);
      if (live.empty()) break;
    }
    if (steps != nullptr) *steps += taken;
    for (const Node* n : live) {
      if (!n->entries.empty()) visit(n->entries);
    }
  }

  // Nodes besides the root: what a publish may have to visit per topic word.
  size_t nodes() const { return nodes_; }
  uint64_t bytes() const { return bytes_; }

  // What the node for `word` costs on the heap: the node (its maps and
  // entries with nothing in them), the bucket array of its word map (see
  // kFirstBucketsBytes) and, for a literal word, its entry in the parent's
  // hash map (the key, the child pointer, the link, the cached hash and about
  // one bucket) and the key's own block when the word does not fit in a
  // string's inline buffer; each block with the allocator's header.
  // The bucket array is counted for every node, leaf or not: any node may
  // get a literal child (`#.a` gives `#` one), the array stays once
  // allocated, and a charge that depends on the word alone is one that At
  // and Prune (and Missing) agree on without tracking a node's history.
  // A long pattern costs a node per word: its characters alone undercount it
  // about 40 times.
  static uint64_t NodeBytes(std::string_view word) {
    uint64_t n = sizeof(Node) + kBlockOverhead + kFirstBucketsBytes;
    if (word == "#" || word == "*") return n;
    n += sizeof(typename WordMap::value_type) + 3 * sizeof(void*) + kBlockOverhead;
    if (word.size() > kInlineChars) n += word.size() + 1 + kBlockOverhead;
    return n;
  }

 private:
  // glibc's and jemalloc's per-block cost, near enough.
  static constexpr uint64_t kBlockOverhead = 16;
  // libstdc++'s short-string buffer.
  static constexpr size_t kInlineChars = 15;

  struct Node;
  struct WordHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using WordMap = std::unordered_map<std::string, std::unique_ptr<Node>, WordHash, std::equal_to<>>;
  struct Node {
    WordMap words;
    std::unique_ptr<Node> star;
    std::unique_ptr<Node> hash;
    bool is_hash = false;
    Entries entries;
    bool Empty() const { return words.empty() && !star && !hash && entries.empty(); }
  };

  // A node whose pattern prefix matched, and the `#` after it, which may
  // match no word at all (after ParsePattern there is at most one).
  static void Enter(std::vector<const Node*>& set, const Node* n) {
    for (; n != nullptr; n = n->hash.get()) set.push_back(n);
  }

  static Node* Child(const Node* n, std::string_view w) {
    if (w == "#") return n->hash.get();
    if (w == "*") return n->star.get();
    auto it = n->words.find(w);
    return it == n->words.end() ? nullptr : it->second.get();
  }

  static std::unique_ptr<Node>* ChildSlot(Node* n, std::string_view w) {
    if (w == "#") return &n->hash;
    if (w == "*") return &n->star;
    auto it = n->words.find(w);
    if (it == n->words.end()) it = n->words.emplace(std::string(w), nullptr).first;
    return &it->second;
  }

  Node root_;
  size_t nodes_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace basin::core

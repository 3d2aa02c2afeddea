// A word trie of topic patterns: finds every pattern that matches a topic
// without looking at the patterns that cannot (RabbitMQ routes its topic
// exchange the same way).
//
// API:
//   At(pattern)     the entries stored under a pattern, its path created if new.
//   Find(pattern)   the same, or null; never creates.
//   Prune(pattern)  removes the nodes of the pattern's path left with no
//                   entries and no children (call after emptying its entries).
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
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/core/topic_name.h"

namespace basin::core {

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
      }
      n = child->get();
    }
    return n->entries;
  }

  Entries* Find(const TopicWords& pattern) {
    Node* n = &root_;
    for (std::string_view w : pattern) {
      n = Child(n, w);
      if (n == nullptr) return nullptr;
    }
    return &n->entries;
  }

  void Prune(const TopicWords& pattern) {
    std::vector<Node*> path{&root_};
    for (std::string_view w : pattern) {
      Node* next = Child(path.back(), w);
      if (next == nullptr) return;
      path.push_back(next);
    }
    for (size_t i = pattern.size(); i > 0; --i) {
      if (!path[i]->Empty()) return;
      Node* parent = path[i - 1];
      const std::string_view w = pattern[i - 1];
      if (w == "#") {
        parent->hash.reset();
      } else if (w == "*") {
        parent->star.reset();
      } else {
        parent->words.erase(parent->words.find(w));
      }
      --nodes_;
    }
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

  // Nodes besides the root: what the trie costs to keep.
  size_t nodes() const { return nodes_; }

 private:
  struct WordHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>, WordHash, std::equal_to<>> words;
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

  static Node* Child(Node* n, std::string_view w) {
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
};

}  // namespace basin::core
